"""MobileNetV2 int8 on real ImageNet photos, every calibration method, both runtimes, one run.

    nice -n 10 .venv/bin/python benchmarks/bench_mobile_int8.py [--data ../shared/imagenet-val-1300]
        [--seed 0] [--calibrate 128] [--train 300] [--held-out N] [--runs 60] [--variant NAME ...] [--runtimes executorch,onnxruntime]

The photos (`imagenet-val-1300`: ILSVRC2012 validation images with labels, not shipped; see its
README) are split once by a seeded permutation: the first `train` may be used for calibration
(the first `calibrate` of them) or label-free fine-tuning; the others are held out and every figure
below is measured on them only. Per int8 variant (`mobile.export(..., quantize="int8", ...)`) and
runtime (each variant names every setting; the "train photos" variants calibrate and fine-tune
on all `train` photos, the others on the first `calibrate`) it prints: top-1 (fp32 and int8), top-1
drop with its paired standard error, top-1 agreement with fp32, each fraction with its 95 % Wilson interval (`labkit.stats.wilson_interval`), export
time (quantization + lowering, s), and the one-thread latency of int8 / fp32 in the same runtime,
timed round-robin (every program once per round, `--runs` rounds after warm-up) so that the load
of the machine hits all alike. Top-1 is PyTorch eager fp32's for "fp32" (the fp32 programs agree
with it, printed). The CPU's int8 dot-product flags and ONNX Runtime's kernel choice
(`mobile.int8_kernels`) are printed. Runs many minutes on 2 cores: ExecuTorch lowering is ~1 min per
program, AdaRound ~1 min.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from labkit import mobile, mobilenet as mb  # noqa: E402
from labkit.deploy import images  # noqa: E402
from labkit.stats import wilson_interval  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "imagenet-val-1300"
# name: (export keywords, runtimes it applies to)
VARIANTS = {
    "minmax": (dict(method="minmax"), ("executorch", "onnxruntime")),
    "percentile": (dict(method="percentile"), ("executorch", "onnxruntime")),
    "histogram": (dict(method="histogram"), ("executorch",)),
    "percentile + AdaRound": (dict(method="percentile", adaround=True), ("executorch",)),
    "percentile + bias correction": (dict(method="percentile", bias_correction=True), ("executorch",)),
    "percentile + AdaRound + bias correction": (dict(method="percentile", adaround=True, bias_correction=True),
                                                ("executorch",)),
    "percentile + AdaRound + bias correction (features.0-1 fp32)": (
        dict(method="percentile", adaround=True, bias_correction=True, float_modules=("features.0", "features.1")),
        ("executorch",)),
    "percentile + AdaRound + bias correction (features.0-3 fp32)": (
        dict(method="percentile", adaround=True, bias_correction=True,
             float_modules=("features.0", "features.1", "features.2", "features.3")), ("executorch",)),
    "percentile + AdaRound + bias correction (features.0-1 fp32; train photos)": (
        dict(method="percentile", adaround=True, bias_correction=True, float_modules=("features.0", "features.1"),
             photos="train"), ("executorch",)),
    "percentile + fine-tuning (train photos)": (dict(method="percentile", finetune=True, photos="train"),
                                                ("executorch",)),
    "percentile + bias correction (train photos)": (dict(method="percentile", bias_correction=True, photos="train"),
                                                    ("executorch",)),
    "percentile (U8U8 kernels)": (dict(method="percentile", kernels="U8U8"), ("onnxruntime",)),
    "percentile (U8S8 kernels)": (dict(method="percentile", kernels="U8S8"), ("onnxruntime",)),
}
SUFFIX = {"executorch": ".pte", "onnxruntime": ".onnx"}


def split(root: Path, train: int, seed: int):
    """(train files, held-out files, held-out labels): a seeded permutation of labels.txt."""
    rows = [line.split(",") for line in (root / "labels.txt").read_text().splitlines() if line.strip()]
    files = [root / f.strip() for f, _ in rows]
    labels = torch.tensor([int(y) for _, y in rows])
    perm = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))
    tr, te = perm[:train], perm[train:]
    return [files[i] for i in tr], [files[i] for i in te], labels[te]


def digest(files) -> str:
    return hashlib.sha256("\n".join(sorted(f.name for f in files)).encode()).hexdigest()[:12]


def interval(k: int, n: int) -> str:
    lo, hi = wilson_interval(k, n)
    return f"{k / n:6.1%} [{lo:5.1%}, {hi:5.1%}]"


def paired_drop(fp32_ok: torch.Tensor, int8_ok: torch.Tensor) -> tuple[float, float]:
    """(top-1 drop in points, its standard error) from the per-image correctness of both models."""
    d = (fp32_ok.float() - int8_ok.float())
    return 100 * d.mean().item(), 100 * d.std().item() / math.sqrt(len(d))


def round_robin_ms(programs: dict, x: torch.Tensor, runs: int, warmup: int = 5, calls: int = 5) -> dict:
    """Median ms of one call per program over `runs` rounds; a round times `calls` consecutive calls
    of each program in turn (caches warm within a program, load shared across programs)."""
    for f in programs.values():
        for _ in range(warmup):
            f(x)
    times = {k: [] for k in programs}
    for _ in range(runs):
        for k, f in programs.items():
            for _ in range(calls):
                t = time.perf_counter()
                f(x)
                times[k].append(time.perf_counter() - t)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=300, help="photos that may be calibrated or fine-tuned on")
    ap.add_argument("--calibrate", type=int, default=128, help="the first of the train photos, for calibration")
    ap.add_argument("--held-out", type=int, default=None, help="score only the first N held-out photos (a quick try)")
    ap.add_argument("--runs", type=int, default=60, help="latency rounds")
    ap.add_argument("--variant", action="append", default=None, choices=list(VARIANTS), metavar="NAME",
                    help="a name of VARIANTS (repeat the option for several; default: all of them)")
    ap.add_argument("--runtimes", default="executorch,onnxruntime")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    names = args.variant or list(VARIANTS)
    runtimes = args.runtimes.split(",")
    train, held, labels = split(args.data, args.train, args.seed)
    calib_files, total = train[:args.calibrate], len(train) + len(held)
    if args.held_out is not None:
        held, labels = held[:args.held_out], labels[:args.held_out]
    machine, flags = mobile.cpu_features()
    dot = sorted(flags & {"avx512_vnni", "avx_vnni", "asimddp", "avx2"})
    print(f"torch {torch.__version__}; CPU {machine}, flags {', '.join(dot) or 'none'}; one thread")
    print(f"ONNX Runtime kernels chosen: {' – '.join(mobile.int8_kernels(machine, flags))}")
    print(f"split: seed {args.seed}, permutation of {total} photos of {args.data.name}; "
          f"calibration = first {len(calib_files)} (sha256 of names {digest(calib_files)}, e.g. "
          f"{calib_files[0].name}), fine-tuning may use the first {len(train)}; held out: the other "
          f"{len(held)} (sha256 {digest(held)}, e.g. {held[0].name})", flush=True)
    X = images.load_images(held)
    calib = list(images.load_images(calib_files).split(32))
    needs_train = any(VARIANTS[v][0].get("photos") == "train" for v in names)
    train_batches = list(images.load_images(train).split(32)) if needs_train else None
    model = mb.mobilenet_v2(pretrained=True).eval()
    with torch.no_grad():
        ref = torch.cat([model(b) for b in X.split(64)])
    fp32_ok = ref.argmax(1) == labels
    n = len(X)
    example = X[:1]
    work = Path(tempfile.mkdtemp(prefix="bench_mobile_int8_"))
    programs, rows = {}, []
    for rt in runtimes:
        path = mobile.export(model, work / f"fp32{SUFFIX[rt]}", example)
        programs[(rt, "fp32")] = mobile.load(path, threads=1)
        agree = (mobile.predict(programs[(rt, "fp32")], X).argmax(1) == ref.argmax(1)).float().mean().item()
        print(f"{rt} fp32 program: top-1 agreement with PyTorch fp32 {agree:.4f}", flush=True)
    print(f"fp32 top-1 (PyTorch eager) on the {n} held-out photos: {interval(int(fp32_ok.sum()), n)}")
    head = (f"{'variant':72s} {'runtime':11s} {'top-1 int8 [95 %]':>22s} {'drop pt ± se':>13s} "
            f"{'agreement [95 %]':>22s} {'export s':>8s}")
    print(head, flush=True)
    for name in names:
        kw, where = VARIANTS[name]
        for rt in runtimes:
            if rt not in where:
                continue
            kw = dict(kw)
            photos = train_batches if kw.pop("photos", None) == "train" else calib
            t = time.perf_counter()
            path = mobile.export(model, work / f"{len(rows)}{SUFFIX[rt]}", example, quantize="int8",
                                 calibration=photos, **{"adaround": False, "bias_correction": False, "float_modules": (), **kw})
            seconds = time.perf_counter() - t
            f = mobile.load(path, threads=1)
            pred = mobile.predict(f, X).argmax(1)
            ok, same = pred == labels, pred == ref.argmax(1)
            drop, se = paired_drop(fp32_ok, ok)
            row = dict(variant=name, runtime=rt, top1_fp32=fp32_ok.float().mean().item(),
                       top1_int8=ok.float().mean().item(), drop_pt=drop, drop_se=se,
                       agreement=same.float().mean().item(), export_s=seconds, n=n,
                       kernels=mobile.onnx_kernels(path) if rt == "onnxruntime" else "XNNPACK qs8")
            rows.append(row)
            programs[(rt, len(rows) - 1)] = f
            print(f"{name:72s} {rt:11s} {interval(int(ok.sum()), n):>22s} {drop:6.2f} ± {se:4.2f} "
                  f"{interval(int(same.sum()), n):>22s} {seconds:8.1f}", flush=True)
    print(f"\nlatency, one thread, median over {args.runs} round-robin rounds of 5 calls per program:")
    ms = round_robin_ms({k: v for k, v in programs.items()}, example, args.runs)
    for rt in runtimes:
        print(f"  {rt} fp32: {ms[(rt, 'fp32')]:.2f} ms")
    print(f"{'variant':72s} {'runtime':11s} {'kernels':12s} {'int8 ms':>8s} {'int8/fp32':>9s}")
    for i, row in enumerate(rows):
        rt = row["runtime"]
        row.update(int8_ms=ms[(rt, i)], fp32_ms=ms[(rt, "fp32")], ratio=ms[(rt, i)] / ms[(rt, "fp32")])
        print(f"{row['variant']:72s} {rt:11s} {row['kernels']:12s} {row['int8_ms']:8.2f} {row['ratio']:9.2f}")
    if args.json:
        args.json.write_text(json.dumps(dict(seed=args.seed, train=len(train), calibrate=len(calib_files),
                                             held_out=n, machine=machine, flags=dot, rows=rows), indent=1))


if __name__ == "__main__":
    main()
