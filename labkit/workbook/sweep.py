"""Parameter sweeps: one notebook over a grid, every run's metrics in one table.

    labkit sweep 01 -g tau=0.02,0.05,0.1 -g seed=0,1,2 --workers 2
    labkit sweep 01 -g tau=0.02,0.05 --dask tcp://scheduler:8786

Each grid point runs the notebook as a report (`workbook.runner.run_notebook`) into its own folder; its
recorded metrics (`labkit.report.record`) become one row of `sweep.csv` / `sweep.parquet`, with
the parameters, the status and the seconds it took. A failed run is a row with status "failed"
and its error; the other runs are kept. Runs go to a local process pool by default, or to an
existing Dask distributed cluster: the same function, mapped by `Client.map`.
"""
from __future__ import annotations

import itertools
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

from ..validate import check_bool, check_int, message
from ._args import check_dict, check_folder, check_path, check_str, check_table, shown


def grid(axes: dict[str, list]) -> list[dict]:
    """The cartesian product of {name: [values]} as a list of {name: value}, in order."""
    allowed = "a dict {name: list of values}"
    check_dict(axes, "axes", "grid", allowed, values=(list, tuple, range))
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def run_tag(params: dict) -> str:
    """A grid point's folder name: {"tau": 0.05, "seed": 1} → 'tau=0.05_seed=1' ('defaults' for {})."""
    check_dict(params, "params", "run_tag")
    return "_".join(f"{k}={v}" for k, v in params.items()) or "defaults"


def run_one(path: str, params: dict, out_dir: str, threads: int | None = 1) -> dict:
    """Run one grid point. A failed run does not raise: it is returned as a row with its error
    (only arguments of the wrong type raise, before anything runs)."""
    check_path(path, "path", "run_one", exists=False)
    check_dict(params, "params", "run_one")
    check_path(out_dir, "out_dir", "run_one", exists=False)
    if threads is not None:
        check_int(threads, "threads", "run_one", low=0)
    from . import runner  # imported here: this runs in a worker process

    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):   # one core per run: no oversubscription
            os.environ[var] = str(threads)
    start = time.perf_counter()
    row = {**params, "status": "ok", "error": "", "seconds": 0.0, "report": ""}
    try:
        folder = Path(out_dir) / run_tag(params)
        dest = runner.run_notebook(Path(path), params, folder, force=True, html=False, progress=False)
        import json

        row.update(json.loads(dest.with_suffix(".json").read_text())["metrics"])
        row["report"] = str(dest)
    except Exception as e:  # noqa: BLE001 — a sweep reports every failure and goes on
        ename = getattr(e, "ename", type(e).__name__)      # papermill's error names the cell's
        row.update(status="failed", error=f"{ename}: {getattr(e, 'evalue', e)}")
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def sweep(path: Path, points: list[dict], out_dir: Path, workers: int = 2,
          dask_address: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Run every grid point; return the table (also written to out_dir/sweep.csv and .parquet).

    points: a non-empty list of {name: value} (as `grid` makes); workers: local processes, or
    dask_address: a Dask scheduler's address instead."""
    check_path(path, "path", "sweep", exists=False)
    allowed = "a non-empty list of {name: value} dicts (as grid makes)"
    if not isinstance(points, (list, tuple)) or not all(isinstance(p, dict) for p in points):
        raise TypeError(message("points", "sweep", allowed, shown(points)))
    if not points:
        raise ValueError(message("points", "sweep", allowed, points))
    for p in points:
        check_dict(p, "points", "sweep", allowed)
    out_dir = check_folder(out_dir, "out_dir", "sweep", exists=False)
    check_int(workers, "workers", "sweep", low=1)
    if dask_address is not None:
        check_str(dask_address, "dask_address", "sweep", empty=False)
    check_bool(progress, "progress", "sweep")
    path = check_path(path, "path", "sweep")
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [(str(path), p, str(out_dir)) for p in points]
    if dask_address:
        from distributed import Client

        with Client(dask_address) as client:
            futures = client.map(run_one, *zip(*args), pure=False)
            rows = client.gather(futures)
    elif workers == 1:
        rows = [run_one(*a, threads=None) for a in _progress(args, progress)]
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_one, *a) for a in args]
            rows = [f.result() for f in _progress(futures, progress)]
    table = pd.DataFrame(rows)
    _atomic(lambda p: table.to_csv(p, index=False), out_dir / "sweep.csv")
    _atomic(lambda p: table.to_parquet(p, index=False), out_dir / "sweep.parquet")
    return table


def _progress(items, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(items, desc="runs", disable=not enabled)


def _atomic(write, dest: Path) -> None:
    """write(path) to a temp file of its own in dest's folder, then rename it onto dest: a reader
    never sees half a table, and two sweeps writing one folder do not share a temp file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)                 # mkstemp makes it 0600; the table is an ordinary file
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def pareto_front(table: pd.DataFrame, cost: str, value: str) -> pd.Series:
    """True for the rows no other row beats: lower-or-equal `cost` and higher-or-equal `value`,
    strictly better in one of them (e.g. cost = size_bytes, value = accuracy)."""
    check_str(cost, "cost", "pareto_front")
    check_str(value, "value", "pareto_front")
    check_table(table, "table", "pareto_front", columns=(cost, value))
    c, v = table[cost].to_numpy(), table[value].to_numpy()
    keep = [not any((c2 <= c1 and v2 >= v1) and (c2 < c1 or v2 > v1) for c2, v2 in zip(c, v))
            for c1, v1 in zip(c, v)]
    return pd.Series(keep, index=table.index)


def pareto_plot(table: pd.DataFrame, value: str = "accuracy",
                costs: tuple[str, ...] = ("size_bytes", "latency_ms"), label: str | None = None):
    """One panel per cost column present: every run as a point, the Pareto front as a line.

    None when the table has no `value` column or none of the `costs` (nothing to draw)."""
    check_table(table, "table", "pareto_plot")
    check_str(value, "value", "pareto_plot")
    if not isinstance(costs, (list, tuple)) or not all(isinstance(c, str) for c in costs):
        raise TypeError(message("costs", "pareto_plot", "a tuple of column names (strs)", shown(costs)))
    if label is not None:
        check_str(label, "label", "pareto_plot")
    import matplotlib.pyplot as plt

    ok = table[table["status"] == "ok"] if "status" in table else table
    present = [c for c in costs if c in ok and value in ok]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 3.6), squeeze=False)
    for ax, cost in zip(axes[0], present):
        ax.scatter(ok[cost], ok[value], color="tab:blue", s=20)
        if label and label in ok:
            for _, r in ok.iterrows():
                ax.annotate(str(r[label]), (r[cost], r[value]), fontsize=7)
        front = ok[pareto_front(ok, cost, value)].sort_values(cost)
        ax.plot(front[cost], front[value], color="tab:red", drawstyle="steps-post", label="Pareto front")
        ax.set_xlabel(cost)
        ax.set_ylabel(value)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
