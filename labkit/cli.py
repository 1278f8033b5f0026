"""`labkit` command line: run the notebooks as reports.

    labkit list                          notebooks, their parameters and defaults
    labkit run 01 -p tau 0.05            one notebook with other parameters → reports/<name>.ipynb + .html
    labkit run all --force               every notebook (what `make report` does)

A parameter's name and type are checked against the notebook's `parameters` cell before anything
runs (a typo lists the valid names). A report is written atomically: the notebook executes into a
temporary file that replaces reports/<name>.ipynb only when the run succeeded, so an interrupted or
failed run leaves the previous report intact and no half-written file. An existing report is not
replaced without --force. The source notebook is never modified.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import tempfile
import time
from pathlib import Path

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
    """Execute `path` with `parameters` into out_dir/<name>.ipynb (+ .html). Returns the .ipynb path."""
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
        if html:
            from nbconvert import HTMLExporter

            body, _ = HTMLExporter().from_notebook_node(nbformat.read(tmp, as_version=4))
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
    args = parser.parse_args(argv)
    try:
        return {"list": cmd_list, "run": cmd_run}[args.command](args)
    except UsageError as e:
        print(f"labkit: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
