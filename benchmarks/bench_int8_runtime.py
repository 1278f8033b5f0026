"""Int8 on an integer runtime vs fp32 vs simulated (fake) quantization: LeNet-300-100 / LeNet-5.

    .venv/bin/python benchmarks/bench_int8_runtime.py [--repeats 50] [--threads 1] [--epochs 10]

Prints, measured in the same run: serialized size (torch.save of the state_dict) and median
latency of one forward pass at batch 1 and 256, for
  - fp32 eager PyTorch (the reference),
  - torch's own fake quantization (torch.ao prepare_qat with the x86 QAT qconfig, in eval mode),
  - labkit's fake quantization (labkit.ptq.quantize_model, W8A8),
  - the int8 model on torch's quantized CPU kernels (labkit.int8.to_int8, x86 engine),
with every latency also as a ratio to fp32 (> 1 = slower), the variants timed round-robin. Timings depend on the machine and
on its load; run it on an idle machine and read the ratios, not the milliseconds.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import torch

from labkit import data, int8, models, ptq, train


def torch_fake_quant(model: torch.nn.Module, X_calib: torch.Tensor) -> torch.nn.Module:
    """torch.ao's QAT-prepared model (FakeQuantize modules), observers frozen, eval mode."""
    qm = int8.Int8Model(copy.deepcopy(model)).train()
    pairs = int8._fuse_pairs(qm.model)
    if pairs:
        qm.model = torch.ao.quantization.fuse_modules_qat(qm.model, pairs)
    qm.qconfig = torch.ao.quantization.get_default_qat_qconfig("x86")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.ao.quantization.prepare_qat(qm, inplace=True)
        with torch.no_grad():
            qm(X_calib)
    qm.apply(torch.ao.quantization.disable_observer)
    return qm.eval()


@torch.no_grad()
def interleaved_ms(variants: dict, x: torch.Tensor, repeats: int, threads: int) -> dict:
    """Median ms per forward of each variant, timed round-robin (one call of each in turn), so
    that a change in the machine's load hits every variant alike."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    times = {k: [] for k in variants}
    try:
        for v in variants.values():
            v.eval()
            for _ in range(3):
                v(x)
        for _ in range(repeats):
            for k, v in variants.items():
                t = time.perf_counter()
                v(x)
                times[k].append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(old)
    return {k: 1000 * statistics.median(t) for k, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    d = data.load_mnist()
    print(f"torch {torch.__version__}, engine x86, {args.threads} thread(s), "
          f"median of {args.repeats} runs\n")
    for name, make in [("LeNet-300-100", models.lenet300_100), ("LeNet-5", models.lenet5)]:
        m = make(seed=0)
        train.fit(m, d.X_train, d.y_train, epochs=args.epochs, seed=0, progress=False)
        variants = {
            "fp32": m,
            "torch fake-quant": torch_fake_quant(m, d.X_val),
            "labkit fake-quant": ptq.quantize_model(m, 8, "symmetric", "channel", 8, "minmax",
                                                    d.X_val),
            "int8 runtime": int8.to_int8(m, d.X_val),
        }
        print(f"== {name}")
        print(f"{'variant':18s} {'accuracy':>8s} {'bytes':>10s} {'size ratio':>10s} "
              f"{'b=1 ms':>8s} {'ratio':>6s} {'b=256 ms':>9s} {'ratio':>6s}")
        base_bytes = int8.serialized_bytes(m)
        lat = {b: interleaved_ms(variants, d.X_test[:b], args.repeats, args.threads)
               for b in (1, 256)}
        base = {b: lat[b]["fp32"] for b in (1, 256)}
        for vname, v in variants.items():
            nbytes = int8.serialized_bytes(v)
            print(f"{vname:18s} {train.accuracy(v, d.X_test, d.y_test):8.4f} {nbytes:10,d} "
                  f"{base_bytes / nbytes:9.2f}× {lat[1][vname]:8.3f} "
                  f"{lat[1][vname] / base[1]:6.2f} {lat[256][vname]:9.3f} "
                  f"{lat[256][vname] / base[256]:6.2f}")
        print()


if __name__ == "__main__":
    main()
