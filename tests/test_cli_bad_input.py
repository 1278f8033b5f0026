"""A bad `labkit` command line is one line on stderr naming the problem, exit status 2, no
traceback, and nothing written: every subcommand (list, run, sweep, students) with unknown flags,
missing values, wrong types, unknown notebooks and parameters.

Most cases call `cli.main(argv)` in this process (what `labkit` runs; an exception escaping it
would fail the test as surely as a traceback); a few run `python -m labkit.workbook.cli` as a
subprocess, to show that nothing escapes the real command either.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import labkit
from conftest import write_notebook
from labkit.workbook import cli

ROOT = Path(labkit.__file__).resolve().parents[1]    # this checkout's labkit, run from any cwd

CASES = [   # (command line after --notebooks NB, what its one line must say)
    (["list", "--bogus"], "unrecognized arguments: --bogus (see 'labkit list --help')"),
    (["list", "01"], "unrecognized arguments: 01"),
    (["run"], "the following arguments are required: notebook"),
    (["run", "01", "--bogus", "-o", "out"], "unrecognized arguments: --bogus (see 'labkit run --help')"),
    (["run", "01", "-p", "tau"], "argument -p/--param: expected 2 arguments"),
    (["run", "01", "-o"], "argument -o/--out: expected one argument"),
    (["run", "01", "-p", "tau", "high", "-o", "out"],
     "The 'tau' parameter of 01_demo must be a float (default 0.05). Got 'high' instead."),
    (["run", "01", "-p", "n", "2.5", "-o", "out"], "The 'n' parameter of 01_demo must be a int"),
    (["run", "01", "-p", "tua", "1", "-o", "out"], "01_demo has no parameter 'tua'. Valid names: tau, n"),
    (["run", "01", "--numerics", "fast", "-o", "out"], "argument --numerics: invalid choice: 'fast'"),
    (["run", "09", "-o", "out"], "'09' is not a notebook. Notebooks in "),
    (["run", "missing/09.ipynb", "-o", "out"], "'missing/09.ipynb' is not a notebook."),
    (["run", "all", "-p", "tau", "1", "-o", "out"], "-p applies to one notebook"),
    (["sweep"], "the following arguments are required: notebook"),
    (["sweep", "01", "-o", "out"], "give at least one -g NAME=V1,V2,..."),
    (["sweep", "01", "-g"], "argument -g/--grid: expected one argument"),
    (["sweep", "01", "-g", "tau", "-o", "out"], "-g takes NAME=V1,V2,...; got 'tau'"),
    (["sweep", "01", "-g", "tau=high", "-o", "out"], "The 'tau' parameter of 01_demo must be a float"),
    (["sweep", "01", "-g", "tua=1", "-o", "out"], "01_demo has no parameter 'tua'"),
    (["sweep", "01", "-g", "tau=0.1", "--workers", "x"], "argument -w/--workers: invalid int value: 'x'"),
    (["sweep", "01", "-g", "tau=0.1", "--workers", "0", "-o", "out"], "--workers must be at least 1"),
    (["sweep", "09", "-g", "tau=0.1"], "'09' is not a notebook"),
    (["sweep", "0", "-g", "tau=0.1"], "matches several notebooks"),
    (["students", "--bogus"], "unrecognized arguments: --bogus (see 'labkit students --help')"),
    (["students", "-o"], "argument -o/--out: expected one argument"),
    ([], "the following arguments are required: command"),
    (["bogus"], "argument command: invalid choice: 'bogus'"),
]
MISSING_FOLDER = [["--notebooks", "missing", "list"], ["--notebooks", "missing", "run", "01", "-o", "out"],
                  ["--notebooks", "missing", "students", "-o", "out"]]
SUBPROCESS = [0, 6, 10, 19, 23]                       # indices into CASES, run as `python -m`


@pytest.fixture
def place(tmp_path, monkeypatch):
    """(notebooks folder, empty cwd): two scratch notebooks, and the cwd a command would write in."""
    nb = tmp_path / "notebooks"
    nb.mkdir()
    write_notebook(nb / "01_demo.ipynb", "tau = 0.05\nn = 3", "print(tau, n)")
    write_notebook(nb / "02_other.ipynb", "seed = 0", "print(seed)")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return nb, cwd


def assert_refused(code, out, err, expected, nb, cwd):
    lines = err.splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1, err                                    # one line, no usage, no traceback
    assert lines[0].startswith("labkit: ") and expected in lines[0], lines[0]
    assert "Traceback" not in err and out == "", out
    assert list(cwd.iterdir()) == []                               # nothing written: no -o, no reports/
    assert sorted(p.name for p in nb.iterdir()) == ["01_demo.ipynb", "02_other.ipynb"]


@pytest.mark.parametrize("argv, expected", CASES, ids=[" ".join(a) or "(none)" for a, _ in CASES])
def test_a_bad_command_line_is_one_line_and_writes_nothing(argv, expected, place, capsys):
    nb, cwd = place
    code = cli.main(["--notebooks", str(nb), *argv])
    captured = capsys.readouterr()
    assert_refused(code, captured.out, captured.err, expected, nb, cwd)


@pytest.mark.parametrize("argv", MISSING_FOLDER, ids=lambda a: " ".join(a))
def test_a_missing_notebooks_folder_is_named(argv, place, capsys):
    nb, cwd = place
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert_refused(code, captured.out, captured.err, "--notebooks missing: no such folder", nb, cwd)


@pytest.mark.parametrize("index", SUBPROCESS, ids=lambda i: " ".join(CASES[i][0]) or "(none)")
def test_the_command_itself_prints_no_traceback(index, place):
    nb, cwd = place
    argv, expected = CASES[index]
    done = subprocess.run([sys.executable, "-m", "labkit.workbook.cli", "--notebooks", str(nb), *argv],
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=120)
    assert_refused(done.returncode, done.stdout, done.stderr, expected, nb, cwd)
