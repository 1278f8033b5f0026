"""Int8 on an integer runtime vs fp32 vs simulated (fake) quantization: LeNet-300-100 / LeNet-5.

    .venv/bin/python benchmarks/bench_int8_runtime.py [--repeats 50] [--threads 1] [--epochs 10]

Prints, measured in the same run: serialized size (torch.save of the state_dict) and median
latency of one forward pass at batch 1 and 256, for
  - fp32 eager PyTorch (the reference),
  - torch's own fake quantization (torch.ao prepare_qat with the x86 QAT qconfig, in eval mode),
  - labkit's fake quantization (labkit.ptq.quantize_model, W8A8),
  - the int8 model on torch's quantized CPU kernels (labkit.int8.to_int8, x86 engine),
with every latency also as a ratio to fp32 (> 1 = slower). Timings depend on the machine and
on its load; run it on an idle machine and read the ratios, not the milliseconds.
"""
from __future__ import annotations

import argparse
import copy
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
        base = {b: int8.latency_ms(m, d.X_test[:b], args.repeats, args.threads) for b in (1, 256)}
        for vname, v in variants.items():
            lat = {b: int8.latency_ms(v, d.X_test[:b], args.repeats, args.threads)
                   for b in (1, 256)}
            nbytes = int8.serialized_bytes(v)
            print(f"{vname:18s} {train.accuracy(v, d.X_test, d.y_test):8.4f} {nbytes:10,d} "
                  f"{base_bytes / nbytes:9.2f}× {lat[1]:8.3f} {lat[1] / base[1]:6.2f} "
                  f"{lat[256]:9.3f} {lat[256] / base[256]:6.2f}")
        print()


if __name__ == "__main__":
    main()
