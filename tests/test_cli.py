"""`labkit run`: parameters checked against the notebook, reports written atomically."""
import json
import os
import signal
import subprocess
import sys
import time

import nbformat
import pytest

from conftest import write_notebook
from labkit.workbook import cli, runner


def make_notebook(path, body="print('tau is', tau)\nfrom labkit import report\n_ = report.record(tau=tau, n=n)"):
    return write_notebook(path, "tau = 0.05  # threshold\nn = 3\nname = 'x'\nflag = False", body)


@pytest.fixture
def nbdir(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    make_notebook(d / "01_demo.ipynb")
    make_notebook(d / "02_fail.ipynb", "raise ValueError(\"The 'tau' parameter of demo must be a float.\")")
    return d


def test_find_notebook_by_prefix_name_and_path(nbdir):
    assert cli.find_notebook("01", nbdir).name == "01_demo.ipynb"
    assert cli.find_notebook("01_demo", nbdir).name == "01_demo.ipynb"
    assert cli.find_notebook(str(nbdir / "02_fail.ipynb"), nbdir).name == "02_fail.ipynb"
    with pytest.raises(FileNotFoundError, match="'07' is not a notebook. Notebooks in .*: 01_demo, 02_fail"):
        cli.find_notebook("07", nbdir)
    with pytest.raises(cli.UsageError, match="matches several"):
        cli.find_notebook("0", nbdir)


def test_an_appendix_shares_the_number_and_sorts_after_its_notebook(nbdir):
    make_notebook(nbdir / "01b_appendix.ipynb")
    assert cli.find_notebook("01", nbdir).name == "01_demo.ipynb"          # the number names 01_*
    assert cli.find_notebook("01b", nbdir).name == "01b_appendix.ipynb"
    assert [p.stem for p in runner.notebooks(nbdir)] == ["01_demo", "01b_appendix", "02_fail"]


def test_parameters_are_read_with_types_and_defaults(nbdir):
    spec = cli.parameters_of(nbdir / "01_demo.ipynb")
    assert {k: (v["type"], v["default"]) for k, v in spec.items()} == {
        "tau": ("float", 0.05), "n": ("int", 3), "name": ("str", "x"), "flag": ("bool", False)}


def test_values_are_coerced_and_checked(nbdir):
    path = nbdir / "01_demo.ipynb"
    got = cli.check_parameters(path, [("tau", "1"), ("n", "5"), ("name", "0.5"), ("flag", "true")])
    assert got == {"tau": 1.0, "n": 5, "name": "0.5", "flag": True}
    with pytest.raises(cli.UsageError, match="01_demo has no parameter 'tua'. Valid names: tau, n, name, flag"):
        cli.check_parameters(path, [("tua", "0.1")])
    with pytest.raises(cli.UsageError, match=r"The 'tau' parameter of 01_demo must be a float \(default 0.05\). Got 'abc'"):
        cli.check_parameters(path, [("tau", "abc")])
    with pytest.raises(cli.UsageError, match="The 'n' parameter of 01_demo must be a int"):
        cli.check_parameters(path, [("n", "2.5")])


def test_run_writes_report_and_html_and_never_overwrites_without_force(nbdir, tmp_path, capsys):
    out = tmp_path / "reports"
    source = (nbdir / "01_demo.ipynb").read_bytes()
    assert cli.main(["--notebooks", str(nbdir), "run", "01", "-p", "tau", "0.25", "-o", str(out), "-q"]) == 0
    report = nbformat.read(out / "01_demo.ipynb", as_version=4)
    assert "tau is 0.25" in report.cells[-1].outputs[0]["text"]
    sidecar = json.loads((out / "01_demo.json").read_text())
    assert sidecar == {"notebook": "01_demo", "parameters": {"tau": 0.25},
                       "metrics": {"tau": 0.25, "n": 3}}
    assert (out / "01_demo.html").stat().st_size > 1000
    assert (nbdir / "01_demo.ipynb").read_bytes() == source            # source untouched
    before = (out / "01_demo.ipynb").read_bytes()
    assert cli.main(["--notebooks", str(nbdir), "run", "01", "-o", str(out), "-q"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (out / "01_demo.ipynb").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["01_demo.html", "01_demo.ipynb", "01_demo.json", "mathjax"]
    assert (out / "mathjax" / "MathJax.js").is_file()        # the HTML renders its maths offline


def test_a_failed_run_keeps_the_previous_report_and_leaves_a_readable_failed_one(nbdir, tmp_path, capsys):
    out = tmp_path / "reports"
    out.mkdir()
    (out / "02_fail.ipynb").write_text("previous report")
    assert cli.main(["--notebooks", str(nbdir), "run", "02", "-o", str(out), "--force", "-q"]) == 1
    err = capsys.readouterr().err
    # one line: the notebook, the cell and line, the source line, the error, the kept report
    line = next(l for l in err.splitlines() if l.startswith("FAILED "))
    assert line == ("FAILED 02_fail at cell In[2], line 1 (raise ValueError(\"The 'tau' parameter of "
                    "demo must be a float.\")): ValueError: The 'tau' parameter of demo must be a float. "
                    f"→ {out / '02_fail.failed.ipynb'}"), line
    assert (out / "02_fail.ipynb").read_text() == "previous report"
    assert sorted(p.name for p in out.iterdir()) == ["02_fail.failed.html", "02_fail.failed.ipynb",
                                                     "02_fail.ipynb", "mathjax"]
    failed = nbformat.read(out / "02_fail.failed.ipynb", as_version=4)
    errors = [o for c in failed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert [e["ename"] for e in errors] == ["ValueError"]


def test_a_successful_run_removes_the_stale_failed_report(nbdir, tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    (out / "01_demo.failed.ipynb").write_text("from an earlier run")
    (out / "01_demo.failed.html").write_text("from an earlier run")
    assert cli.main(["--notebooks", str(nbdir), "run", "01", "-o", str(out), "-q", "--no-html"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["01_demo.ipynb", "01_demo.json"]


def test_failure_location_reads_the_cell_frame_of_an_ipython_traceback():
    tb = ["\x1b[0;31mAssertionError\x1b[0m  Traceback (most recent call last)",
          "Cell \x1b[0;32mIn[13], line 2\x1b[0m\n      1 x = 1\n----> 2 assert x == 2, 'claim'",
          "File \x1b[0;32m/lib/x.py:9\x1b[0m, in \x1b[0;36mf\x1b[0m"]
    assert runner.failure_location(tb, "x = 1\nassert x == 2, 'claim'") == (13, 2, "assert x == 2, 'claim'")
    assert runner.failure_location(["no cell frame"], "x") == (None, None, "")


def test_an_interrupted_run_stops_its_kernel_and_leaves_the_previous_report_intact(nbdir, tmp_path):
    running = tmp_path / "running"                       # the kernel writes its pid: the cell is executing
    make_notebook(nbdir / "03_slow.ipynb",
                  f"import os, pathlib, time\npathlib.Path({str(running)!r}).write_text(str(os.getpid()))\ntime.sleep(900)")
    out = tmp_path / "reports"
    out.mkdir()
    (out / "03_slow.ipynb").write_text("previous report")
    proc = subprocess.Popen([sys.executable, "-m", "labkit.workbook.cli", "--notebooks", str(nbdir), "run",
                             "03", "-o", str(out), "--force", "-q"], start_new_session=True,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120                     # a loaded machine starts a kernel slowly
        while time.time() < deadline and not (running.exists() and running.read_text()
                                              and list(out.glob(".03_slow.*"))):
            time.sleep(0.2)                              # the temporary report exists and the cell runs
        assert running.exists() and running.read_text(), "the kernel never started the cell within 120 s"
        kernel = int(running.read_text())
        os.killpg(proc.pid, signal.SIGINT)               # Ctrl-C
        err = proc.communicate(timeout=120)[1]           # a lost Ctrl-C would sleep on for 900 s
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted (Ctrl-C)" in err, err[-2000:]
    assert (out / "03_slow.ipynb").read_text() == "previous report"
    assert sorted(p.name for p in out.iterdir()) == ["03_slow.ipynb"]
    for _ in range(50):                                  # the kernel was killed, not left sleeping
        try:
            os.kill(kernel, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(kernel, signal.SIGKILL)
        pytest.fail(f"the kernel (pid {kernel}) still runs after the interrupted run exited")


def test_unknown_notebook_and_all_with_parameters_are_usage_errors(nbdir, capsys):
    assert cli.main(["--notebooks", str(nbdir), "run", "09", "-q"]) == 2
    assert cli.main(["--notebooks", str(nbdir), "run", "all", "-p", "tau", "1"]) == 2
    err = capsys.readouterr().err
    assert "'09' is not a notebook" in err and "-p applies to one notebook" in err


def test_list_shows_parameters(nbdir, capsys):
    assert cli.main(["--notebooks", str(nbdir), "list"]) == 0
    out = capsys.readouterr().out
    assert "01_demo" in out and "tau" in out and "0.05" in out and "# threshold" not in out.split("tau")[0]


def test_python_dash_m_runs_the_command_at_its_place(nbdir):
    """`python -m labkit.workbook.cli` is the `labkit` command (pyproject.toml's console script)."""
    out = subprocess.run([sys.executable, "-m", "labkit.workbook.cli", "--notebooks", str(nbdir), "list"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[0] == "01_demo"


def test_run_numerics_sets_the_kernel_environment(nbdir, tmp_path):
    write_notebook(nbdir / "04_env.ipynb", "seed = 0",
                   "import os\nprint('ATEN', os.environ.get('ATEN_CPU_CAPABILITY'), 'OMP', os.environ.get('OMP_NUM_THREADS'))")
    out = tmp_path / "reports"
    before = os.environ.get("ATEN_CPU_CAPABILITY")
    assert cli.main(["--notebooks", str(nbdir), "run", "04", "-o", str(out), "-q", "--no-html",
                     "--numerics", "perturbed"]) == 0
    text = nbformat.read(out / "04_env.ipynb", as_version=4).cells[-1].outputs[0]["text"]
    assert text == "ATEN default OMP 2\n", text
    assert os.environ.get("ATEN_CPU_CAPABILITY") == before          # the runner's own process is restored
