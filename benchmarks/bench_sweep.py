"""Sweep throughput: 8 runs of a notebook, serial vs a 2-process pool vs a Dask LocalCluster.

    .venv/bin/python benchmarks/bench_sweep.py [--notebook 01] [--out /tmp/bench_sweep]

Prints the wall time of each and the ratio parallel / serial (goal ≤ 0.60 on 2 cores). The serial
runs use every core each (the fair baseline); the pool and Dask give each run one thread, and their
tables must be identical. Runs notebook 01 in smoke mode over 4 τ × 2 seeds.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from labkit import cli, sweep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--notebook", default="01")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_sweep_"))
    path = cli.find_notebook(args.notebook)
    points = [{**p, "smoke": True} for p in sweep.grid({"tau": [0.02, 0.04, 0.06, 0.08], "seed": [0, 1]})]

    timings, tables = {}, {}
    for name, kw in (("serial", {"workers": 1}), ("2 processes", {"workers": 2})):
        start = time.perf_counter()
        tables[name] = sweep.sweep(path, points, out / name.replace(" ", "_"), progress=False, **kw)
        timings[name] = time.perf_counter() - start

    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        start = time.perf_counter()
        tables["dask"] = sweep.sweep(path, points, out / "dask", dask_address=c.scheduler_address,
                                     progress=False)
        timings["dask"] = time.perf_counter() - start

    metrics = [c for c in tables["serial"].columns if c not in ("error", "seconds", "report")]
    assert (tables["serial"]["status"] == "ok").all(), tables["serial"]
    # the pool and Dask both run each notebook on one thread: identical numbers
    pd.testing.assert_frame_equal(tables["2 processes"][metrics], tables["dask"][metrics])
    # serial uses every core per run; multi-threaded float sums may differ in the last digits
    numeric = tables["serial"][metrics].select_dtypes("number").columns
    diff = (tables["serial"][numeric] - tables["2 processes"][numeric]).abs().max().max()
    print(f"{len(points)} runs of {path.stem} (smoke)")
    for name, t in timings.items():
        print(f"  {name:<12} {t:6.1f} s   ratio to serial {t / timings['serial']:.2f}")
    print("pool and Dask tables identical on", ", ".join(metrics))
    print(f"largest difference serial (all threads) vs pool (1 thread each): {diff:.2g}")


if __name__ == "__main__":
    main()
