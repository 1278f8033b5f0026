"""Global magnitude pruning of a 100M-weight MLP: labkit against torch.nn.utils.prune.

    .venv/bin/python benchmarks/bench_global_magnitude.py [--weights 100_000_000] [--amount 0.9]

Each method runs in its own subprocess (one thread count for all), so its peak resident memory
(resource.getrusage ru_maxrss) is its own. Printed per method: seconds of the pruning call, the
peak RSS, the RSS growth during the call, and both as multiples of the model's size; then the
ratios against torch measured in this same run, and a check that every method pruned the same
number of weights below the same threshold. Timings on a shared machine are noisy: compare the
ratios, not the seconds.

Methods:
  torch          torch.nn.utils.prune.global_unstructured(..., L1Unstructured, amount)
  labkit-mask    labkit.prune.magnitude_(model, amount, scope="global")          (masks, torch's mechanism)
  labkit-inplace labkit.prune.magnitude_(model, amount, scope="global", permanent=True)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

METHODS = ("torch", "labkit-inplace", "labkit-mask")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(n_weights: int):
    import torch
    from torch import nn

    width = 5000
    n_layers = max(1, round(n_weights / width**2))
    model = nn.Sequential()
    gen = torch.Generator().manual_seed(0)
    for _ in range(n_layers):
        layer = nn.Linear(1, 1, bias=False)
        layer.weight = nn.Parameter(torch.randn(width, width, generator=gen))
        model.append(layer)
    return model


def child(method: str, n_weights: int, amount: float, threads: int) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    from torch.nn.utils import prune as tp

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from labkit import prune

    base = rss_mb()                                      # Python + torch, before the model
    model = build(n_weights)
    size_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    before = rss_mb()
    t = time.perf_counter()
    if method == "torch":
        tp.global_unstructured([(m, "weight") for m in model], tp.L1Unstructured, amount=amount)
    elif method == "labkit-mask":
        prune.magnitude_(model, amount, scope="global")
    else:
        prune.magnitude_(model, amount, scope="global", permanent=True)
    seconds = time.perf_counter() - t
    peak = peak_mb()
    with torch.no_grad():
        zeros = sum(int((m.weight == 0).sum()) for m in model)
        largest_pruned = max(float(m.weight_orig[m.weight == 0].abs().max()) if hasattr(m, "weight_orig")
                             else 0.0 for m in model)
        if method == "labkit-inplace":                   # the original values are gone: rebuild them
            ref = build(n_weights)
            largest_pruned = max(float(r.weight[m.weight == 0].abs().max()) for m, r in zip(model, ref))
        smallest_kept = min(float(m.weight[m.weight != 0].abs().min()) for m in model)
    return {"method": method, "seconds": seconds, "peak_mb": peak, "before_mb": before, "base_mb": base,
            "model_mb": size_mb, "weights": sum(m.weight.numel() for m in model), "zeros": zeros,
            "largest_pruned": largest_pruned, "smallest_kept": smallest_kept,
            "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=int, default=100_000_000)
    ap.add_argument("--amount", type=float, default=0.9)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads in every method (0: torch's default)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.weights, args.amount, args.threads)))
        return
    rows = []
    for method in args.methods.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", method, "--weights", str(args.weights),
                              "--amount", str(args.amount), "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ref = next((r for r in rows if r["method"] == "torch"), None)
    print(f"{rows[0]['weights']:,} weights ({rows[0]['model_mb']:.0f} MB fp32), amount {args.amount}, "
          f"{rows[0]['threads']} threads")
    print(f"{'method':<16}{'seconds':>9}{'peak MB':>9}{'peak/size':>10}{'growth/size':>12}{'(peak-base)/size':>17}{'speed-up':>10}"
          f"{'zeros':>13}")
    for r in rows:
        growth = (r["peak_mb"] - r["before_mb"]) / r["model_mb"]
        speed = f"{ref['seconds'] / r['seconds']:.1f}x" if ref else "-"
        print(f"{r['method']:<16}{r['seconds']:>9.3f}{r['peak_mb']:>9.0f}{r['peak_mb'] / r['model_mb']:>10.2f}"
              f"{growth:>12.2f}{(r['peak_mb'] - r['base_mb']) / r['model_mb']:>17.2f}{speed:>10}{r['zeros']:>13,}")
    same = len({r["zeros"] for r in rows}) == 1
    ordered = all(r["largest_pruned"] <= r["smallest_kept"] for r in rows)
    print(f"same number of zeros: {same}; every pruned |w| <= every kept |w|: {ordered}")
    print("peak/size: peak RSS of the process (Python, torch and the model included) over the model's size;"
          "\ngrowth/size: RSS added during the pruning call over the model's size;"
          "\n(peak-base)/size: peak RSS less the RSS of Python + torch before the model was built.")


if __name__ == "__main__":
    main()
