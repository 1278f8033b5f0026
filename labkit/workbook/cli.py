"""`labkit` command line: run the notebooks as reports.

    labkit list                          notebooks, their parameters and defaults
    labkit run 01 -p tau 0.05            one notebook with other parameters → reports/<name>.ipynb,
                                         .html, and .json (its parameters and recorded metrics)
    labkit run all --force               every notebook (what `make report` does)
    labkit sweep 01 -g tau=0.02,0.05 -g seed=0,1 [--workers 2 | --dask ADDRESS]
                                         a grid of runs → reports/sweeps/01_…/sweep.csv, .parquet,
                                         metrics.png (each recorded metric vs the swept
                                         parameters), pareto.png (where a cost and a value are
                                         recorded: `labkit list` says which notebooks do)
    labkit students                      student notebooks (solutions stubbed) → build/students/

A parameter's name and type are checked against the notebook's `parameters` cell before anything
runs (a typo lists the valid names). A report is written atomically: the notebook executes into a
temporary file that replaces reports/<name>.ipynb only when the run succeeded, so an interrupted or
failed run leaves the previous report intact and no half-written file. An existing report is not
replaced without --force. The source notebook is never modified.

A bad command line (an unknown flag, a missing or ill-typed value, an unknown notebook or
parameter) is one line on stderr, exit status 2, and nothing is written.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import numerics
from ._args import check_path, check_strs
from .runner import (NOTEBOOKS, RunFailed, UsageError, check_parameters, find_notebook,
                     notebooks, parameters_of, run_notebook)

__all__ = ["main", "UsageError", "RunFailed", "find_notebook", "notebooks", "parameters_of",
           "check_parameters", "run_notebook"]


def _cmd_list(args) -> int:
    from . import report, sweep

    for path in notebooks(Path(args.notebooks)):
        print(path.stem)
        for name, p in parameters_of(path).items():
            print(f"    {name:<16} {p['type']:<6} = {p['default']!r:<12} {p['help']}")
        names = report.recorded_names(path)
        pairs = sweep.pareto_pairs(names)
        print(f"    records: {', '.join(names) or 'nothing (labkit.report.record is not called)'}")
        print("    sweep figures: metrics.png" + (
            ", pareto.png (" + ", ".join(f"{v} vs {c}" for c, v in pairs) + ")" if pairs else
            "; no pareto.png (no cost with a value)") if names else "    sweep figures: none")
    return 0


def _cmd_run(args) -> int:
    directory = Path(args.notebooks)
    paths = notebooks(directory) if args.notebook == "all" else [find_notebook(args.notebook, directory)]
    if args.notebook == "all" and args.param:
        raise UsageError("-p applies to one notebook; name it instead of 'all'.")
    if not paths:
        raise UsageError(f"no notebooks in {directory}")
    plans = [(p, check_parameters(p, args.param or [])) for p in paths]   # all checked first
    env = numerics.environment(args.numerics)
    failed = []
    for path, params in plans:
        start = time.perf_counter()
        try:
            dest = run_notebook(path, params, Path(args.out), force=args.force,
                                html=not args.no_html, progress=not args.quiet, env=env)
        except RunFailed as e:
            print(f"FAILED {e.reason()}", file=sys.stderr)
            failed.append(path.stem)
            continue
        print(f"{dest} ({time.perf_counter() - start:.1f} s)")
    if failed:
        print(f"{len(failed)} of {len(plans)} failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def parse_grid(path: Path, specs: list[str]) -> dict[str, list]:
    """["tau=0.02,0.05", "seed=0,1"] → {"tau": [0.02, 0.05], "seed": [0, 1]}, type-checked
    against the notebook at `path` (a spec without '=' or an unknown or ill-typed value: UsageError)."""
    check_path(path, "path", "parse_grid", exists=False)
    check_strs(specs, "specs", "parse_grid", "a list of 'NAME=V1,V2,...' strs")
    axes = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not values:
            raise UsageError(f"-g takes NAME=V1,V2,...; got {spec!r}")
        axes[name] = [check_parameters(path, [(name, v)])[name] for v in values.split(",")]
    return axes


def _cmd_sweep(args) -> int:
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
    written = ["sweep.csv", "sweep.parquet", *_save_figures(table, axes, out, path.stem)]
    failed = table[table["status"] != "ok"]
    print(table.drop(columns=["report"]).to_string(index=False))
    why = "" if "pareto.png" in written else (
        f" (no pareto.png: {path.stem} records no cost ({', '.join(c + '*' for c in sweep.COSTS)}) "
        f"with a value ({sweep.VALUE}*))" if "metrics.png" in written else " (no figure: no run recorded a number)")
    print(f"{len(table)} runs in {time.perf_counter() - start:.1f} s → {out}/{', '.join(written)}{why}")
    for _, row in failed.iterrows():
        print(f"FAILED {_run_label(row, axes)}: {row['error']}", file=sys.stderr)
    return 1 if len(failed) else 0


def _save_figures(table, axes, out: Path, name: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")              # files only: no window, whatever the machine has
    from . import sweep

    return sweep.save_figures(table, axes, out, title=name)


def _run_label(row, axes) -> str:
    return ", ".join(f"{k}={row[k]}" for k in axes)


def _cmd_students(args) -> int:
    from . import students

    made = students.generate(Path(args.notebooks), Path(args.out))
    for name, n in made.items():
        print(f"{Path(args.out) / name}.ipynb: {n} exercise{'s' * (n != 1)}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with its error as one line (a UsageError) instead of the usage and the error."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _check_folders(args) -> None:
    """The command line's folders, before anything runs: --notebooks exists, -o is not a file."""
    if not Path(args.notebooks).is_dir():
        raise UsageError(f"--notebooks {args.notebooks}: no such folder (an installed labkit has no "
                         "notebooks: name their folder with --notebooks DIR)")
    out = getattr(args, "out", None)
    if out and Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"-o {out}: not a folder")


def main(argv=None) -> int:
    """`labkit ...`: run the command line `argv` (default sys.argv[1:]); its exit status."""
    parser = _Parser(prog="labkit", description=__doc__.split("\n\n")[0])
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
    run.add_argument("--numerics", choices=sorted(numerics.ENVIRONMENTS), default="native",
                     help="numeric environment of the kernel: the machine's own (default), the "
                          "'reference' one the stored outputs come from, or 'perturbed'")
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
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:                                  # named by the subcommand they were given to
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} "
                             f"(see 'labkit {args.command} --help')")
        _check_folders(args)
        return {"list": _cmd_list, "run": _cmd_run, "sweep": _cmd_sweep,
                "students": _cmd_students}[args.command](args)
    except (UsageError, FileNotFoundError) as e:
        print(f"labkit: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("labkit: interrupted (Ctrl-C): the kernel was stopped and the report being written "
              "discarded; reports written before are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
