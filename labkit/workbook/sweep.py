"""Parameter sweeps: one notebook over a grid, every run's metrics in one table.

    labkit sweep 01 -g tau=0.02,0.05,0.1 -g seed=0,1,2 --workers 2
    labkit sweep 01 -g tau=0.02,0.05 --dask tcp://scheduler:8786

Each grid point runs the notebook as a report (`workbook.runner.run_notebook`) into its own folder; its
recorded metrics (`labkit.report.record`) become one row of `sweep.csv` / `sweep.parquet`, with
the parameters, the status and the seconds it took. A failed run is a row with status "failed"
and its error; the other runs are kept. Runs go to a local process pool by default, or to an
existing Dask distributed cluster: the same function, mapped by `Client.map`.

Every sweep draws what it recorded (`figures`): metrics.png, each numeric recorded metric against
the swept parameter(s) (`metrics_plot`), and pareto.png where the notebook records a cost and a
value (`pareto_pairs`, `pareto_plot`), beside the table.

The cost/value rule (`is_cost`, `is_value`), read off a recorded metric's name:
- a cost is `size_bytes`, `latency_ms`, `params` or `macs`, alone or with a `_suffix`
  (`params_structured`); lower is better;
- a value is `accuracy`, alone or with a `_suffix` (`accuracy_pruned`); higher is better;
- a name ending in `_std` is neither (it is the spread of another metric).
Each cost is paired with the value of the same suffix (params_structured → accuracy_structured),
else with `accuracy`, else with the first value recorded.
"""
from __future__ import annotations

import itertools
import math
import numbers
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

from ..validate import accepts, check_bool, check_int, message
from ._args import check_dict, check_folder, check_path, check_str, check_strs, check_table, shown


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
    # absolute: a Dask worker (or a pool process) has its own working folder, and the runs must
    # land beside this table, not in the worker's folder
    args = [(str(path.resolve()), p, str(out_dir.resolve())) for p in points]
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


COSTS = ("size_bytes", "latency_ms", "params", "macs")    # lower is better, alone or + "_suffix"
VALUE = "accuracy"                                         # higher is better, alone or + "_suffix"
RUN_COLUMNS = ("status", "error", "seconds", "report")     # what the sweep adds to every row


def _suffix(name: str, stem: str) -> str | None:
    """'' for name == stem, 'x' for stem_x, None otherwise (and for spreads, *_std)."""
    if name.endswith("_std"):
        return None
    if name == stem:
        return ""
    return name[len(stem) + 1:] if name.startswith(stem + "_") and len(name) > len(stem) + 1 else None


@accepts(str="'x' is a metric name, and no cost: False")
def is_cost(name: str) -> bool:
    """A recorded metric that is a cost (lower is better): size_bytes, latency_ms, params, macs (+ _suffix)."""
    check_str(name, "name", "is_cost")
    return any(_suffix(name, c) is not None for c in COSTS)


@accepts(str="'x' is a metric name, and no value: False")
def is_value(name: str) -> bool:
    """A recorded metric that is a value (higher is better): accuracy (+ _suffix), not *_std."""
    check_str(name, "name", "is_value")
    return _suffix(name, VALUE) is not None


@accepts(list="no metric names: no pairs, []")
def pareto_pairs(names) -> list[tuple[str, str]]:
    """[(cost, value)] to draw a Pareto front of, from recorded metric names; [] without a cost and a value.

    Each cost pairs with the value of the same suffix, else `accuracy`, else the first value."""
    names = list(names) if isinstance(names, (tuple, pd.Index)) else names
    check_strs(names, "names", "pareto_pairs", "a list of metric names (strs)")
    values = [n for n in names if is_value(n)]
    pairs = []
    for cost in (n for n in names if is_cost(n)):
        if not values:
            break
        suffix = next(_suffix(cost, c) for c in COSTS if _suffix(cost, c) is not None)
        same = [v for v in values if suffix and _suffix(v, VALUE) == suffix]
        pairs.append((cost, same[0] if same else VALUE if VALUE in values else values[0]))
    return pairs


def _numeric(series: pd.Series) -> bool:
    return (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
            and series.notna().any())


def recorded_metrics(table: pd.DataFrame, axes) -> list[str]:
    """The numeric columns a sweep's notebook recorded: not a swept parameter, not the sweep's own."""
    check_table(table, "table", "recorded_metrics")
    ok = table[table["status"] == "ok"] if "status" in table else table
    return [c for c in ok.columns if c not in axes and c not in RUN_COLUMNS and _numeric(ok[c])]


def metrics_plot(table: pd.DataFrame, axes, title: str | None = None):
    """One panel per numeric recorded metric against the first swept parameter (x).

    axes: the swept parameters ({name: values} as the sweep's grid, or their names, in order).
    One line per value of the other swept parameters but `seed` (their combinations, labelled);
    where `seed` is swept (and is not the only parameter), each point is the mean over the seeds
    with a ± one standard deviation error bar. A parameter given one value is not an axis (x is
    the first with several). Failed runs are left out. None when no run
    succeeded or the notebook recorded no numeric metric (nothing to draw)."""
    check_table(table, "table", "metrics_plot")
    if isinstance(axes, dict):
        order = {k: list(v) for k, v in axes.items()}
    elif isinstance(axes, (list, tuple)) and all(isinstance(a, str) for a in axes):
        order = {k: None for k in axes}
    else:
        raise TypeError(message("axes", "metrics_plot", "a dict {name: values} or a list of names",
                                shown(axes)))
    if not order or any(k not in table for k in order):
        raise ValueError(message("axes", "metrics_plot", "swept parameters that are columns of the "
                                 f"table ({', '.join(map(str, table.columns))})", list(order)))
    if title is not None:
        check_str(title, "title", "metrics_plot")
    import matplotlib.pyplot as plt

    ok = table[table["status"] == "ok"] if "status" in table else table
    metrics = recorded_metrics(table, order)
    if ok.empty or not metrics:
        return None
    varied = [k for k in order if ok[k].nunique() > 1] or list(order)[:1]   # a one-value axis is no axis
    swept = [k for k in varied if k != "seed"]
    x = swept[0] if swept else varied[0]
    over_seed = "seed" in varied and x != "seed"
    lines = [k for k in swept if k != x]
    xs = order[x] if order[x] is not None else sorted(ok[x].unique(), key=lambda v: (str(type(v)), v))
    xs = [v for v in xs if (ok[x] == v).any()]
    numeric_x = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in xs)
    pos = {v: (v if numeric_x else i) for i, v in enumerate(xs)}
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, panels = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    groups = list(ok.groupby(lines, sort=False)) if lines else [((), ok)]
    for ax, metric in zip(panels.flat, metrics):
        for key, g in groups:
            key = key if isinstance(key, tuple) else (key,)
            stats = g.groupby(x, sort=False)[metric].agg(["mean", "std", "count"])
            stats = stats.loc[[v for v in xs if v in stats.index]].dropna(subset=["mean"])
            if stats.empty:
                continue
            label = ", ".join(f"{k}={v}" for k, v in zip(lines, key)) or None
            at = [pos[v] for v in stats.index]
            if over_seed:
                ax.errorbar(at, stats["mean"], yerr=stats["std"].fillna(0.0), marker="o", ms=4,
                            capsize=3, label=label)
            else:
                ax.plot(at, stats["mean"], marker="o", ms=4, label=label)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel(x)
        if not numeric_x:
            ax.set_xticks(list(pos.values()), [str(v) for v in xs])
        if lines:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(panels.flat)[len(metrics):]:
        ax.set_visible(False)
    seeds = sorted(ok["seed"].unique()) if over_seed else []
    note = f"mean ± std over seed={','.join(map(str, seeds))}" if over_seed else "one run per point"
    fig.suptitle(f"{title + ': ' if title else ''}recorded metrics vs {x} ({note})", fontsize=10)
    fig.tight_layout()
    return fig


def figures(table: pd.DataFrame, axes, title: str | None = None) -> dict:
    """{file name: figure} of a sweep: 'metrics.png' (`metrics_plot`), and 'pareto.png' where the
    recorded metrics hold a cost and a value (`pareto_pairs`); a name is absent when it has nothing
    to draw."""
    out = {}
    fig = metrics_plot(table, axes, title=title)
    if fig is not None:
        out["metrics.png"] = fig
    pairs = pareto_pairs(recorded_metrics(table, axes))
    varied = [k for k in axes if k in table and table[k].nunique() > 1]
    labelled = table.assign(_run=[", ".join(f"{k}={r[k]}" for k in varied) for _, r in table.iterrows()])
    fig = pareto_plot(labelled, pairs=pairs, label="_run" if varied else None) if pairs else None
    if fig is not None:
        out["pareto.png"] = fig
    return out


def save_figures(table: pd.DataFrame, axes, out_dir: Path, title: str | None = None) -> list[str]:
    """Write `figures` into out_dir (beside sweep.csv), each atomically; the names written. A
    figure a previous sweep left there that this one does not draw is removed."""
    out_dir = check_folder(out_dir, "out_dir", "save_figures")
    import matplotlib.pyplot as plt

    drawn = figures(table, axes, title=title)
    for name, fig in drawn.items():
        _atomic(lambda p, fig=fig: fig.savefig(p, dpi=120, format="png"), out_dir / name)
        plt.close(fig)
    for stale in ("metrics.png", "pareto.png"):
        if stale not in drawn:
            (out_dir / stale).unlink(missing_ok=True)
    return list(drawn)


def pareto_plot(table: pd.DataFrame, value: str = "accuracy",
                costs: tuple[str, ...] = ("size_bytes", "latency_ms"), label: str | None = None,
                pairs: list[tuple[str, str]] | None = None):
    """One panel per cost column present: every run as a point, the Pareto front as a line.

    pairs: [(cost, value)] panels instead of `value` against each of `costs` (as `pareto_pairs`
    gives). None when the table has no `value` column or none of the `costs` (nothing to draw)."""
    check_table(table, "table", "pareto_plot")
    check_str(value, "value", "pareto_plot")
    if not isinstance(costs, (list, tuple)) or not all(isinstance(c, str) for c in costs):
        raise TypeError(message("costs", "pareto_plot", "a tuple of column names (strs)", shown(costs)))
    if label is not None:
        check_str(label, "label", "pareto_plot")
    if pairs is not None and (not isinstance(pairs, (list, tuple)) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in pairs)):
        raise TypeError(message("pairs", "pareto_plot", "a list of (cost, value) column names", shown(pairs)))
    import matplotlib.pyplot as plt

    ok = table[table["status"] == "ok"] if "status" in table else table
    wanted = pairs if pairs is not None else [(c, value) for c in costs]
    present = [(c, v) for c, v in wanted if c in ok and v in ok and ok[[c, v]].notna().all(axis=1).any()]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 3.6), squeeze=False)
    for ax, (cost, value) in zip(axes[0], present):
        ok = table[table["status"] == "ok"] if "status" in table else table
        ok = ok[ok[[cost, value]].notna().all(axis=1)]
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
