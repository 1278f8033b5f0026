"""`labkit` command line: run the notebooks as reports.

    labkit list                          notebooks, their parameters and defaults
    labkit run 01 -p tau 0.05            one notebook with other parameters → reports/<name>.ipynb,
                                         .html, and .json (its parameters and recorded metrics)
    labkit run all --force               every notebook (what `make report` does)
    labkit sweep 01 -g tau=0.02,0.05 -g seed=0,1 [--workers 2 | --dask ADDRESS]
                                         a grid of runs → reports/sweeps/01_…/sweep.csv, .parquet, pareto.png
    labkit students                      student notebooks (solutions stubbed) → build/students/

A parameter's name and type are checked against the notebook's `parameters` cell before anything
runs (a typo lists the valid names). A report is written atomically: the notebook executes into a
temporary file that replaces reports/<name>.ipynb only when the run succeeded, so an interrupted or
failed run leaves the previous report intact and no half-written file. An existing report is not
replaced without --force. The source notebook is never modified.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from . import report

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


class UsageError(Exception):
    """A bad command line: printed as one line, exit status 2."""


def find_notebook(key: str, directory: Path = NOTEBOOKS) -> Path:
    """'01', '01_sparsity_and_threshold_pruning', or a path → the notebook's path."""
    p = Path(key)
    if p.suffix == ".ipynb" and p.exists():
        return p
    matches = sorted(directory.glob(f"{key}*.ipynb")) if directory.is_dir() else []
    exact = [m for m in matches if m.stem == key]
    if exact:
        return exact[0]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(n.stem for n in notebooks(directory)) or "none"
    what = "matches several notebooks" if matches else "is not a notebook"
    raise UsageError(f"'{key}' {what}. Notebooks in {directory}: {names}")


def notebooks(directory: Path = NOTEBOOKS) -> list[Path]:
    return sorted(p for p in directory.glob("[0-9][0-9]_*.ipynb"))


def parameters_of(path: Path) -> dict[str, dict]:
    """{name: {"type": "int"|"float"|"str"|"bool", "default": value, "help": comment}}."""
    import papermill

    params = papermill.inspect_notebook(str(path))
    if not params:
        raise UsageError(f"{path.name} has no cell tagged 'parameters'.")
    out = {}
    for name, p in params.items():
        default = ast.literal_eval(p["default"])
        out[name] = {"type": type(default).__name__, "default": default, "help": p.get("help", "")}
    return out


def coerce(name: str, raw: str, spec: dict, nb: str):
    """The command-line string `raw` as a value of the parameter's type, or a UsageError."""
    kind = spec["type"]
    if kind == "str":
        return raw
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = {"true": True, "false": False}.get(raw.lower(), raw)
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value).__name__ != kind:
        raise UsageError(f"The '{name}' parameter of {nb} must be a {kind} "
                         f"(default {spec['default']!r}). Got {raw!r} instead.")
    return value


def check_parameters(path: Path, pairs: list[tuple[str, str]]) -> dict:
    spec = parameters_of(path)
    values = {}
    for name, raw in pairs:
        if name not in spec:
            raise UsageError(f"{path.stem} has no parameter '{name}'. "
                             f"Valid names: {', '.join(spec)}")
        values[name] = coerce(name, raw, spec[name], path.stem)
    return values


def _atomic_write_text(text: str, dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def run_notebook(path: Path, parameters: dict, out_dir: Path, force: bool = False,
                 html: bool = True, progress: bool = True) -> Path:
    """Execute `path` with `parameters` into out_dir/<name>.ipynb (+ .html, + .json metrics).

    Returns the .ipynb path. The .json sidecar holds the parameters and the metrics the
    notebook recorded with `labkit.report.record`.
    """
    import nbformat
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / f"{path.stem}.ipynb"
    if dest.exists() and not force:
        raise UsageError(f"{dest} exists; pass --force to replace it.")
    os.environ["LABKIT_HEADLESS"] = "1"
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{path.stem}.", suffix=".tmp.ipynb")
    os.close(fd)
    try:
        papermill.execute_notebook(str(path), tmp, parameters=parameters, cwd=str(path.parent),
                                   kernel_name="python3", progress_bar=progress)
        executed = nbformat.read(tmp, as_version=4)
        metrics = {"notebook": path.stem, "parameters": parameters, "metrics": report.read(executed)}
        _atomic_write_text(json.dumps(metrics, indent=1, sort_keys=True), dest.with_suffix(".json"))
        if html:
            from nbconvert import HTMLExporter

            body, _ = HTMLExporter().from_notebook_node(executed)
            _atomic_write_text(body, dest.with_suffix(".html"))
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def cmd_list(args) -> int:
    for path in notebooks(Path(args.notebooks)):
        print(path.stem)
        for name, p in parameters_of(path).items():
            print(f"    {name:<16} {p['type']:<6} = {p['default']!r:<12} {p['help']}")
    return 0


def cmd_run(args) -> int:
    import papermill

    directory = Path(args.notebooks)
    paths = notebooks(directory) if args.notebook == "all" else [find_notebook(args.notebook, directory)]
    if args.notebook == "all" and args.param:
        raise UsageError("-p applies to one notebook; name it instead of 'all'.")
    if not paths:
        raise UsageError(f"no notebooks in {directory}")
    plans = [(p, check_parameters(p, args.param or [])) for p in paths]   # all checked first
    failed = []
    for path, params in plans:
        start = time.perf_counter()
        try:
            dest = run_notebook(path, params, Path(args.out), force=args.force,
                                html=not args.no_html, progress=not args.quiet)
        except papermill.PapermillExecutionError as e:
            print(f"FAILED {path.stem}: {e.ename}: {e.evalue}", file=sys.stderr)
            failed.append(path.stem)
            continue
        print(f"{dest} ({time.perf_counter() - start:.1f} s)")
    if failed:
        print(f"{len(failed)} of {len(plans)} failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def parse_grid(path: Path, specs: list[str]) -> dict[str, list]:
    """["tau=0.02,0.05", "seed=0,1"] → {"tau": [0.02, 0.05], "seed": [0, 1]}, type-checked."""
    axes = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not values:
            raise UsageError(f"-g takes NAME=V1,V2,...; got {spec!r}")
        axes[name] = [check_parameters(path, [(name, v)])[name] for v in values.split(",")]
    return axes


def cmd_sweep(args) -> int:
    from . import sweep

    path = find_notebook(args.notebook, Path(args.notebooks))
    axes = parse_grid(path, args.grid or [])
    if not axes:
        raise UsageError("give at least one -g NAME=V1,V2,...")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1. Got {args.workers}.")
    out = Path(args.out) if args.out else Path("reports") / "sweeps" / path.stem
    if (out / "sweep.csv").exists() and not args.force:
        raise UsageError(f"{out / 'sweep.csv'} exists; pass --force to replace it.")
    points = sweep.grid(axes)
    start = time.perf_counter()
    table = sweep.sweep(path, points, out, workers=args.workers, dask_address=args.dask,
                        progress=not args.quiet)
    fig = sweep.pareto_plot(table)
    if fig is not None:
        fig.savefig(out / "pareto.png", dpi=120)
    failed = table[table["status"] != "ok"]
    print(table.drop(columns=["report"]).to_string(index=False))
    print(f"{len(table)} runs in {time.perf_counter() - start:.1f} s → {out}/sweep.csv, sweep.parquet")
    for _, row in failed.iterrows():
        print(f"FAILED {run_label(row, axes)}: {row['error']}", file=sys.stderr)
    return 1 if len(failed) else 0


def run_label(row, axes) -> str:
    return ", ".join(f"{k}={row[k]}" for k in axes)


def cmd_students(args) -> int:
    from . import students

    made = students.generate(Path(args.notebooks), Path(args.out))
    for name, n in made.items():
        print(f"{Path(args.out) / name}.ipynb: {n} exercise{'s' * (n != 1)}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="labkit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebooks", default=str(NOTEBOOKS), help="folder of the notebooks")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="notebooks and their parameters")
    run = sub.add_parser("run", help="run a notebook (or 'all') as a report")
    run.add_argument("notebook", help="'01', a notebook name or path, or 'all'")
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                     help="set a parameter (repeatable)")
    run.add_argument("-o", "--out", default="reports", help="output folder (default reports/)")
    run.add_argument("--force", action="store_true", help="replace an existing report")
    run.add_argument("--no-html", action="store_true", help="skip the HTML export")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sw = sub.add_parser("sweep", help="run a notebook over a parameter grid, one table of metrics")
    sw.add_argument("notebook", help="'01', a notebook name or path")
    sw.add_argument("-g", "--grid", action="append", metavar="NAME=V1,V2",
                    help="values of one parameter (repeatable; the grid is their product)")
    sw.add_argument("-w", "--workers", type=int, default=2, help="local processes (default 2)")
    sw.add_argument("--dask", metavar="ADDRESS", help="send the runs to this Dask scheduler instead")
    sw.add_argument("-o", "--out", help="output folder (default reports/sweeps/<notebook>)")
    sw.add_argument("--force", action="store_true", help="replace an existing sweep table")
    sw.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    st = sub.add_parser("students", help="student notebooks: solutions replaced by stubs")
    st.add_argument("-o", "--out", default="build/students", help="output folder (default build/students)")
    args = parser.parse_args(argv)
    try:
        return {"list": cmd_list, "run": cmd_run, "sweep": cmd_sweep,
                "students": cmd_students}[args.command](args)
    except UsageError as e:
        print(f"labkit: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
