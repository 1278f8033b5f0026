"""Find a notebook, check its parameters, run it as a report: the one path every runner takes.

`labkit run`, `labkit sweep` and the tests all come here. A report is written atomically: the
notebook executes into a temporary file that replaces reports/<name>.ipynb only when the run
succeeded, so an interrupted or failed run leaves the previous report as it was. A failed run is
kept too, as reports/<name>.failed.ipynb (+ .html): executed up to the failing cell, with the
error; `RunFailed` says in one line which cell, which line and which claim. An existing report is
not replaced without `force`. The source notebook is never modified.
"""
from __future__ import annotations

import ast
import json
import os
import re
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from ..validate import accepts, check_bool, check_float, message
from . import report
from ._args import check_dict, check_folder, check_path, check_str, check_strs, shown

# The notebooks beside the package in a source checkout; an installed wheel has none, so
# `labkit --notebooks DIR` names them.
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


class UsageError(ValueError):
    """A bad command line or parameter value: `labkit` prints it as one line, exit status 2.

    A ValueError, so a Python caller of find_notebook or check_parameters catches it as one."""


class RunFailed(Exception):
    """A notebook raised: where (cell, line, source line), what (ename, evalue), and the kept report."""

    def __init__(self, notebook: str, ename: str, evalue: str, cell=None, line=None,
                 source_line: str = "", failed_report: Path | None = None):
        self.notebook, self.ename, self.evalue = notebook, ename, evalue
        self.cell, self.line, self.source_line = cell, line, source_line
        self.failed_report = failed_report
        super().__init__(self.reason())

    def reason(self) -> str:
        where = f"cell In[{self.cell}]" if self.cell is not None else "a cell"
        if self.line is not None:
            where += f", line {self.line}"
        if self.source_line:
            where += f" ({self.source_line.strip()[:100]})"
        first = self.evalue.strip().splitlines()[0] if self.evalue.strip() else ""
        kept = f" → {self.failed_report}" if self.failed_report else ""
        return f"{self.notebook} at {where}: {self.ename}: {first}{kept}"


def find_notebook(key: str, directory: Path = NOTEBOOKS) -> Path:
    """'01', '01_sparsity_and_threshold_pruning', or a path → the notebook's path. A notebook's
    number names it even when an appendix shares the prefix ('08' is 08_*, '08b' is 08b_*).

    A key that names no notebook raises FileNotFoundError (listing the notebooks of `directory`);
    a prefix of several, a UsageError (a ValueError)."""
    check_path(key, "key", "find_notebook", exists=False)
    directory = check_folder(directory, "directory", "find_notebook", exists=False)
    key = os.fspath(key)
    p = Path(key)
    if p.suffix == ".ipynb" and p.is_file():
        return p
    as_name = p.name == key and p.suffix != ".ipynb" and not any(c in key for c in "*?[")
    matches = sorted(directory.glob(f"{key}*.ipynb")) if as_name and directory.is_dir() else []
    exact = [m for m in matches if m.stem == key] or [m for m in matches if m.stem.split("_", 1)[0] == key]
    if exact:
        return exact[0]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(n.stem for n in notebooks(directory)) if directory.is_dir() else "none (no such folder)"
    if matches:
        raise UsageError(message("key", "find_notebook", f"the name, a unique prefix or the path of one "
                                 f"notebook; it matches several notebooks in {directory}: "
                                 + ", ".join(m.stem for m in matches), key))
    raise FileNotFoundError(f"'{key}' is not a notebook. Notebooks in {directory}: {names or 'none'}")


def notebooks(directory: Path = NOTEBOOKS) -> list[Path]:
    """The numbered notebooks of `directory` (01_*.ipynb, ..., an appendix 08b_* after 08_*), in order."""
    directory = check_folder(directory, "directory", "notebooks")
    return sorted(p for p in directory.glob("[0-9][0-9]*_*.ipynb"))


def parameters_of(path: Path) -> dict[str, dict]:
    """{name: {"type": "int"|"float"|"str"|"bool", "default": value, "help": comment}}."""
    path = check_path(path, "path", "parameters_of")
    import nbformat
    import papermill

    try:
        params = papermill.inspect_notebook(str(path))
    except (nbformat.reader.NotJSONError, nbformat.ValidationError, IsADirectoryError, UnicodeDecodeError):
        raise ValueError(message("path", "parameters_of", "a Jupyter notebook (.ipynb)", str(path))) from None
    if not params:
        raise UsageError(message("path", "parameters_of", "a notebook with a cell tagged 'parameters'",
                                 path.name))
    out = {}
    for name, p in params.items():
        default = ast.literal_eval(p["default"])
        out[name] = {"type": type(default).__name__, "default": default, "help": p.get("help", "")}
    return out


def coerce(name: str, raw: str, spec: dict, nb: str):
    """The command-line string `raw` as a value of the parameter's type, or a UsageError.

    spec: the parameter's entry in `parameters_of` ({"type": ..., "default": ...}); nb: the
    notebook's name, for the message."""
    check_str(name, "name", "coerce")
    check_str(raw, "raw", "coerce")
    allowed = 'a parameter spec {"type": "int"|"float"|"str"|"bool", "default": ...} as parameters_of gives'
    check_dict(spec, "spec", "coerce", allowed)
    if spec.get("type") not in ("int", "float", "str", "bool") or "default" not in spec:
        raise ValueError(message("spec", "coerce", allowed, spec))
    check_str(nb, "nb", "coerce")
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
    """{name: value} from the command line's (name, raw string) pairs, checked against the
    notebook's parameters cell: an unknown name or a value of the wrong type is a UsageError."""
    check_path(path, "path", "check_parameters", exists=False)
    allowed = "a list of (name, value) pairs of strs"
    def pair(p):
        return isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(s, str) for s in p)

    if not isinstance(pairs, (list, tuple)) or not all(map(pair, pairs)):
        raise TypeError(message("pairs", "check_parameters", allowed, shown(pairs)))
    path = check_path(path, "path", "check_parameters")
    spec = parameters_of(path)
    values = {}
    for name, raw in pairs:
        if name not in spec:
            raise UsageError(f"{path.stem} has no parameter '{name}'. "
                             f"Valid names: {', '.join(spec)}")
        values[name] = coerce(name, raw, spec[name], path.stem)
    return values


@accepts(str="'x' is a text and a file name: it writes the text 'x' to ./x, as asked")
def atomic_write_text(text: str, dest: Path) -> None:
    """Write `text` to `dest` through a unique temporary file in the same folder, then rename."""
    check_str(text, "text", "atomic_write_text")
    dest = check_path(dest, "dest", "atomic_write_text", exists=False)
    check_folder(dest.parent, "dest", "atomic_write_text")      # its folder exists
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@accepts(none="None is the documented 'no variables': os.environ as it is inside the block")
def environment(env: dict[str, str] | None):
    """os.environ updated by `env` inside the block (kernels started there inherit it).

        with environment({"OMP_NUM_THREADS": "1"}): ...
    """
    if env is not None:
        check_dict(env, "env", "environment", "a dict {variable: str value} or None", values=str)
    return _environment(env)


@contextmanager
def _environment(env: dict[str, str] | None):
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CELL_LINE = re.compile(r"Cell In\[(\d+)\], line (\d+)")


def failure_location(traceback: list[str], source: str) -> tuple[int | None, int | None, str]:
    """(execution count, line, source line) of the notebook cell's frame in an IPython traceback.

    traceback: the list of str lines papermill's error carries; source: the failing cell's source."""
    check_strs(traceback, "traceback", "failure_location", "a list of strs (the traceback's lines)")
    check_str(source, "source", "failure_location")
    text = _ANSI.sub("", "\n".join(traceback))
    m = _CELL_LINE.search(text)
    if not m:
        return None, None, ""
    line = int(m.group(2))
    lines = source.splitlines()
    return int(m.group(1)), line, lines[line - 1] if 0 < line <= len(lines) else ""


def _export(nb_path: Path, html: bool) -> None:
    if html:
        import nbformat

        body = report.html(nbformat.read(nb_path, as_version=4), nb_path.parent)   # needs no network
        atomic_write_text(body, nb_path.with_suffix(".html"))


def kernel_config():
    """The kernel manager's settings for a run: CurveZMQ encryption of the kernel's sockets where
    pyzmq has it (the kernel then does not warn that it runs over TCP without encryption)."""
    import zmq
    from traitlets.config import Config

    return Config({"KernelManager": {"transport_encryption": "auto" if zmq.has("curve") else "disabled"}})


def _kill(kernels: list) -> None:
    """SIGKILL the process group of every kernel in `kernels` (each is its own session leader:
    jupyter_client starts it with start_new_session), so what a cell started dies with it."""
    for km in kernels:
        process = getattr(getattr(km, "provisioner", None), "process", None)
        if process is None or process.poll() is not None:
            continue
        try:
            if hasattr(os, "killpg"):
                os.killpg(os.getpgid(process.pid), signal.SIGKILL)
            else:                                              # Windows: no process groups
                process.kill()
        except (ProcessLookupError, PermissionError):
            pass


def execute(path: Path, out: Path, parameters: dict, progress: bool = False, stop_after: float = 60.0) -> None:
    """papermill.execute_notebook(path → out) with Ctrl-C that always stops it.

    papermill runs in a worker thread and this thread waits, so a SIGINT raises KeyboardInterrupt
    here. (On the main thread nbclient installs its own SIGINT handler, which only schedules a
    kernel shutdown and raises nothing: on a loaded machine the run then went on to the end and
    exited 0.) On KeyboardInterrupt the kernel's process group is killed, the worker is given up to
    `stop_after` seconds to finish writing `out` (so that nothing writes it after the caller
    removes it), and KeyboardInterrupt is raised again. papermill's own errors are raised here."""
    path = check_path(path, "path", "execute")
    out = check_path(out, "out", "execute", exists=False)
    check_dict(parameters, "parameters", "execute")
    check_bool(progress, "progress", "execute")
    stop_after = check_float(stop_after, "stop_after", "execute", low=0)
    import papermill
    from jupyter_client.manager import AsyncKernelManager

    kernels, error = [], []

    class Manager(AsyncKernelManager):                         # remembers the kernels it starts
        async def start_kernel(self, **kw):
            kernels.append(self)
            return await super().start_kernel(**kw)

    def work():
        try:
            papermill.execute_notebook(str(path), str(out), parameters=parameters, cwd=str(path.parent),
                                       kernel_name="python3", progress_bar=progress, config=kernel_config(),
                                       kernel_manager_class=Manager)
        except BaseException as e:                            # handed to the waiting thread
            error.append(e)

    worker = threading.Thread(target=work, name=f"labkit run {path.stem}", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:
        _kill(kernels)
        worker.join(stop_after)
        _kill(kernels)                                        # one started while we waited
        raise
    if error:
        raise error[0]


def run_notebook(path: Path, parameters: dict, out_dir: Path, force: bool = False,
                 html: bool = True, progress: bool = True, env: dict[str, str] | None = None) -> Path:
    """Execute `path` with `parameters` into out_dir/<name>.ipynb (+ .html, + .json metrics).

    Returns the .ipynb path. The .json sidecar holds the parameters and the metrics the notebook
    recorded with `labkit.workbook.report.record`. `env` adds environment variables for the
    kernel (e.g. `numerics.environment("perturbed")`). On failure raises RunFailed, after keeping
    the executed notebook as out_dir/<name>.failed.ipynb (+ .html).
    """
    func = "run_notebook"
    check_path(path, "path", func, exists=False)
    check_dict(parameters, "parameters", func)
    check_folder(out_dir, "out_dir", func, exists=False)
    check_bool(force, "force", func)
    check_bool(html, "html", func)
    check_bool(progress, "progress", func)
    if env is not None:
        check_dict(env, "env", func, "a dict {variable: str value} or None", values=str)
    path = check_path(path, "path", func)
    if not path.is_file() or path.suffix != ".ipynb":
        raise ValueError(message("path", func, "the path of a notebook file (.ipynb)", str(path)))
    out_dir = Path(out_dir)
    import nbformat
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / f"{path.stem}.ipynb"
    failed = out_dir / f"{path.stem}.failed.ipynb"
    if dest.exists() and not force:
        raise UsageError(f"{dest} exists; pass --force to replace it.")
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{path.stem}.", suffix=".tmp.ipynb")
    os.close(fd)
    try:
        with environment({"LABKIT_HEADLESS": "1", **(env or {})}):
            execute(path, Path(tmp), parameters, progress)
    except papermill.PapermillExecutionError as e:
        cell, line, source_line = failure_location(list(e.traceback or []), str(e.source or ""))
        os.replace(tmp, failed)
        _export(failed, html)
        raise RunFailed(path.stem, e.ename, str(e.evalue), cell, line, source_line, failed) from None
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:
        executed = nbformat.read(tmp, as_version=4)
        metrics = {"notebook": path.stem, "parameters": parameters, "metrics": report.read(executed)}
        atomic_write_text(json.dumps(metrics, indent=1, sort_keys=True), dest.with_suffix(".json"))
        _export(Path(tmp), html)
        if html:
            os.replace(Path(tmp).with_suffix(".html"), dest.with_suffix(".html"))
        os.replace(tmp, dest)
        for stale in (failed, failed.with_suffix(".html")):     # the last run succeeded
            stale.unlink(missing_ok=True)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        Path(tmp).with_suffix(".html").unlink(missing_ok=True)
    return dest
