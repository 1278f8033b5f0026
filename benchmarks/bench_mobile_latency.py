"""MobileNetV2, one 224×224 image: ExecuTorch (XNNPACK) and ONNX Runtime, fp32 and int8, vs PyTorch eager.

    .venv/bin/python benchmarks/bench_mobile_latency.py [--threads 1] [--runs 100] [--method percentile]
                                                          [--runtimes executorch,onnxruntime]

Exports torchvision's pretrained MobileNetV2 (labkit.mobilenet) with labkit.mobile.export to each
runtime, fp32 and int8 (per-channel weights; activations calibrated on 16 views of 12 photos that
are not scored, `images.calibration_images`; ReLU6-aware ranges and AdaRound for ExecuTorch), then
prints per program: file size, median / p90 latency over `runs` calls after warm-up, and the ratios
against PyTorch eager fp32 measured in this same run (the reference), plus int8 top-1 agreement with
fp32 on the photos and their mirror images. Timings on a shared machine are noisy: compare ratios.
ExecuTorch's lowering takes minutes on 2 cores (a fixed cost of torch.export's decompositions).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from labkit import count, images, mobile, mobilenet as mb  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--method", default="percentile", choices=mobile.METHODS)
    ap.add_argument("--runtimes", default="executorch,onnxruntime")
    ap.add_argument("--no-adaround", dest="adaround", action="store_false",
                    help="round the .pte's int8 weights to nearest instead of by AdaRound")
    args = ap.parse_args()
    model = mb.mobilenet_v2(pretrained=True)
    X = torch.stack([mb.preprocess(p) for p in images.photos().values()])
    calib = [images.calibration_images(16)]
    views = torch.cat([X, X.flip(-1)])
    with torch.no_grad():
        ref = model(views).argmax(1)
    x = X[:1]
    eager = count.benchmark(model, x, threads=args.threads, runs=args.runs)
    print(f"threads {args.threads}, runs {args.runs}, cpus {os.cpu_count()}, torch {torch.__version__}")
    print(f"{'program':40s} {'MB':>6s} {'median ms':>10s} {'p90 ms':>8s} {'eager/this':>10s} {'agree':>6s} {'export s':>8s}")
    print(f"{'PyTorch eager fp32':40s} {sum(p.numel() for p in model.parameters()) * 4 / 1e6:6.2f} "
          f"{eager['median_ms']:10.2f} {eager['p90_ms']:8.2f} {1.0:10.2f} {1.0:6.3f} {0.0:8.1f}")
    work = Path(tempfile.mkdtemp(prefix="bench_mobile_"))
    for rt in args.runtimes.split(","):
        suffix = {"executorch": ".pte", "onnxruntime": ".onnx"}[rt]
        method = args.method if rt == "executorch" or args.method != "histogram" else "minmax"
        for q in (None, "int8"):
            t = time.perf_counter()
            ada = args.adaround and q is not None and rt == "executorch"
            path = mobile.export(model, work / f"mnv2_{q or 'fp32'}{suffix}", x, quantize=q,
                                 calibration=calib if q else None, method=method, adaround=ada,
                                 bias_correction=False)
            seconds = time.perf_counter() - t
            agree = (mobile.predict(mobile.load(path), views).argmax(1) == ref).float().mean().item()
            r = mobile.benchmark(path, x, threads=args.threads, runs=args.runs)
            name = f"{rt} {q or 'fp32'}" + (f" ({method}{', AdaRound' if ada else ''})" if q else "")
            print(f"{name:40s} {r['size_mb']:6.2f} {r['median_ms']:10.2f} {r['p90_ms']:8.2f} "
                  f"{eager['median_ms'] / r['median_ms']:10.2f} {agree:6.3f} {seconds:8.1f}", flush=True)


if __name__ == "__main__":
    main()
