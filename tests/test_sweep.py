"""`labkit sweep`: a grid of notebook runs, one table, failures kept, Dask gives the same table."""
from pathlib import Path

import pandas as pd
import pytest

from conftest import write_notebook
from labkit.workbook import cli, sweep


def make_notebook(path):
    body = ("if a < 0:\n    raise ValueError(\"The 'a' parameter of demo must be >= 0.\")\n"
            "from labkit import report\n"
            "_ = report.record(accuracy=1 - b / (a + 1), size_bytes=100 * a)")
    return write_notebook(path, "a = 1\nb = 0.5", body)


@pytest.fixture
def nbdir(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    make_notebook(d / "01_demo.ipynb")
    return d


def test_grid_is_the_product_in_order():
    assert sweep.grid({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    assert sweep.run_tag({"a": 1, "b": 0.5}) == "a=1_b=0.5"


def test_pareto_front_by_hand():
    t = pd.DataFrame({"size": [1, 2, 3, 2, 4], "acc": [0.5, 0.8, 0.9, 0.7, 0.9]})
    assert sweep.pareto_front(t, "size", "acc").tolist() == [True, True, True, False, False]


def test_atomic_writes_use_a_unique_temp_file_in_the_destination_folder(tmp_path):
    """Issue 15: two sweeps writing one folder shared the temp file '.sweep.csv.tmp'. Here a second
    write to the same table starts while the first is half done (as a second sweep would)."""
    dest = tmp_path / "sweep.csv"
    temps = []

    def inner(p):
        temps.append(p)
        Path(p).write_text("second")

    def outer(p):
        temps.append(p)
        Path(p).write_text("first")
        sweep._atomic(inner, dest)                                 # the other sweep, meanwhile

    sweep._atomic(outer, dest)
    assert dest.read_text() == "first"                             # the last replace wins, whole
    assert len(set(map(str, temps))) == 2 and all(Path(p).parent == tmp_path for p in temps)
    assert [f.name for f in tmp_path.iterdir()] == ["sweep.csv"]   # no temp file left behind
    def full(p):
        Path(p).write_text("par")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        sweep._atomic(full, tmp_path / "b.csv")
    assert [f.name for f in tmp_path.iterdir()] == ["sweep.csv"]   # nor after a failed write


def test_grid_values_are_type_checked(nbdir):
    path = nbdir / "01_demo.ipynb"
    assert cli.parse_grid(path, ["a=0,2", "b=1"]) == {"a": [0, 2], "b": [1.0]}
    with pytest.raises(cli.UsageError, match="The 'a' parameter of 01_demo must be a int"):
        cli.parse_grid(path, ["a=0.5"])
    with pytest.raises(cli.UsageError, match="no parameter 'c'"):
        cli.parse_grid(path, ["c=1"])
    with pytest.raises(cli.UsageError, match="-g takes NAME=V1,V2"):
        cli.parse_grid(path, ["a"])


def test_sweep_collects_metrics_and_keeps_going_after_a_failure(nbdir, tmp_path, capsys):
    out = tmp_path / "sweep"
    code = cli.main(["--notebooks", str(nbdir), "sweep", "01", "-g", "a=-1,0,1", "-g", "b=0.5",
                     "--workers", "2", "-o", str(out), "-q"])
    assert code == 1                                        # one run failed
    table = pd.read_csv(out / "sweep.csv")
    assert table["a"].tolist() == [-1, 0, 1]
    assert table["status"].tolist() == ["failed", "ok", "ok"]
    assert "ValueError: The 'a' parameter of demo must be >= 0." in table.loc[0, "error"]
    assert table.loc[1:, "accuracy"].tolist() == [0.5, 0.75]
    parquet = pd.read_parquet(out / "sweep.parquet")                # the same table as the .csv
    pd.testing.assert_frame_equal(parquet[["a", "status", "accuracy"]], table[["a", "status", "accuracy"]])
    assert (out / "pareto.png").stat().st_size > 0 and (out / "metrics.png").stat().st_size > 0
    captured = capsys.readouterr()
    assert "FAILED a=-1" in captured.err
    assert captured.out.strip().splitlines()[-1].endswith(
        f"→ {out}/sweep.csv, sweep.parquet, metrics.png, pareto.png")   # the closing line names them
    # an existing table is not replaced without --force
    assert cli.main(["--notebooks", str(nbdir), "sweep", "01", "-g", "a=1", "-o", str(out), "-q"]) == 2


def test_dask_local_cluster_gives_the_same_table(nbdir, tmp_path):
    import distributed  # pinned in pyproject.toml: missing, it must fail here, not skip
    path = nbdir / "01_demo.ipynb"
    points = sweep.grid({"a": [0, 2], "b": [0.5, 1.0]})
    local = sweep.sweep(path, points, tmp_path / "local", workers=2, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        remote = sweep.sweep(path, points, tmp_path / "dask", dask_address=cluster.scheduler_address,
                             progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local" / "sweep.parquet"), local)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "dask" / "sweep.parquet"), remote)
    cols = ["a", "b", "status", "accuracy", "size_bytes"]
    pd.testing.assert_frame_equal(local[cols], remote[cols])


# ---------------------------------------------------------------- what a sweep draws (issue 23)
def test_cost_and_value_are_read_off_the_metric_names():
    assert [n for n in ["size_bytes", "latency_ms", "params", "params_structured", "macs_dense",
                        "accuracy", "sparsity", "size", "paramsx"] if sweep.is_cost(n)] == [
        "size_bytes", "latency_ms", "params", "params_structured", "macs_dense"]
    assert [n for n in ["accuracy", "accuracy_pruned", "accuracy_pruned_std", "accuracyx", "f1"]
            if sweep.is_value(n)] == ["accuracy", "accuracy_pruned"]
    # notebook 01 records no cost; 07 and 00 do; 03 pairs each cost with the value of its suffix
    assert sweep.pareto_pairs(["tau", "sparsity", "accuracy_pruned", "accuracy_dense"]) == []
    assert sweep.pareto_pairs(["size_bytes", "accuracy_dense"]) == [("size_bytes", "accuracy_dense")]
    assert sweep.pareto_pairs(["params", "accuracy", "size_bytes"]) == [("params", "accuracy"),
                                                                        ("size_bytes", "accuracy")]
    assert sweep.pareto_pairs(["params_dense", "params_structured", "accuracy_dense", "accuracy_structured"]) == [
        ("params_dense", "accuracy_dense"), ("params_structured", "accuracy_structured")]
    with pytest.raises(TypeError, match="'names' parameter of pareto_pairs"):
        sweep.pareto_pairs("accuracy")


def test_recorded_names_are_read_from_the_source_without_running_it(tmp_path):
    from labkit.workbook import report

    body = ("%matplotlib inline\nfrom labkit import report\nraise SystemExit('never run')\n"
            "_ = report.record(accuracy=1.0, size_bytes=3, **extra)\nrecord(accuracy=0.5, tau=1)")
    path = write_notebook(tmp_path / "01_x.ipynb", "a = 1", body)
    assert report.recorded_names(path) == ["accuracy", "size_bytes", "tau"]
    assert report.recorded_names(write_notebook(tmp_path / "02_y.ipynb", "a = 1", "print(a)")) == []


def synthetic():
    """tau × b × seed, one failed run; metrics acc = 1 - tau + b/10 + seed/100, size = 100 tau."""
    rows = []
    for tau in (0.1, 0.05, 0.2):
        for b in ("x", "y"):
            for seed in (0, 1, 2):
                rows.append({"tau": tau, "b": b, "seed": seed, "status": "ok", "error": "", "seconds": 1.0,
                             "report": "r", "acc": 1 - tau + (b == "y") / 10 + seed / 100,
                             "size_bytes": 100 * tau, "tag": "s", "flag": True})
    rows.append({"tau": 0.1, "b": "x", "seed": 3, "status": "failed", "error": "E", "seconds": 1.0,
                 "report": ""})
    return pd.DataFrame(rows)


def test_metrics_plot_draws_each_metric_against_the_swept_parameter_with_seed_error_bars():
    import matplotlib
    matplotlib.use("Agg")
    import numpy as np

    table = synthetic()
    axes = {"tau": [0.1, 0.05, 0.2], "b": ["x", "y"], "seed": [0, 1, 2, 3]}
    fig = sweep.metrics_plot(table, axes)
    panels = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in panels] == ["acc", "size_bytes"]        # numbers only, no params
    acc = panels[0]
    assert acc.get_xlabel() == "tau"
    assert [t.get_text() for t in acc.get_legend().get_texts()] == ["b=x", "b=y"]   # a line per b
    assert len(acc.containers) == 2                                         # error bars: over seed
    line = acc.containers[0].lines[0]
    assert line.get_xdata().tolist() == [0.1, 0.05, 0.2]                    # the grid's order
    np.testing.assert_allclose(np.asarray(line.get_ydata(), float), [0.91, 0.96, 0.81])        # mean over seeds 0-2
    bars = acc.containers[0].lines[2][0].get_segments()                     # ± std (0.01), the failed run out
    np.testing.assert_allclose([s[1][1] - s[0][1] for s in bars], [0.02] * 3)
    assert "mean ± std over seed=0,1,2" in fig._suptitle.get_text()
    # without seed: one run per point, one line per b, plain lines
    one = table[table["seed"] == 0]
    fig = sweep.metrics_plot(one, ["tau", "b", "seed"])
    assert len(fig.axes[0].containers) == 0 and len(fig.axes[0].lines) == 2
    assert "one run per point" in fig._suptitle.get_text()
    # a str parameter on x: categorical positions labelled with the values
    fig = sweep.metrics_plot(one, ["b", "seed"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["x", "y"]
    assert sweep.metrics_plot(table[table["status"] == "failed"], axes) is None   # nothing to draw
    with pytest.raises(ValueError, match="'axes' parameter of metrics_plot"):
        sweep.metrics_plot(table, ["nope"])


def test_figures_are_the_metrics_and_the_pareto_front_where_a_cost_and_a_value_are_recorded(tmp_path):
    import matplotlib
    matplotlib.use("Agg")

    table = synthetic()
    axes = {"tau": [0.1, 0.05, 0.2], "b": ["x", "y"], "seed": [0, 1, 2, 3]}
    assert sweep.save_figures(table, axes, tmp_path) == ["metrics.png"]   # acc is no value: no front
    table = table.rename(columns={"acc": "accuracy"})
    (tmp_path / "stale").mkdir()
    assert sweep.save_figures(table, axes, tmp_path) == ["metrics.png", "pareto.png"]
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert sweep.save_figures(table.drop(columns=["size_bytes"]), axes, tmp_path) == ["metrics.png"]
    assert not (tmp_path / "pareto.png").exists()                 # a previous sweep's front is gone


def test_a_sweep_without_a_cost_writes_the_metrics_figure_and_says_why_there_is_no_front(tmp_path, capsys):
    d = tmp_path / "notebooks"
    d.mkdir()
    write_notebook(d / "01_demo.ipynb", "tau = 0.1\nseed = 0",
                   "from labkit import report\n_ = report.record(tau=tau, accuracy_pruned=1 - tau + seed / 100)")
    out = tmp_path / "sweep"
    assert cli.main(["--notebooks", str(d), "sweep", "01", "-g", "tau=0.1,0.2", "-g", "seed=0,1",
                     "-o", str(out), "-q", "--workers", "2"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("4 runs in ") and last.endswith(
        f"→ {out}/sweep.csv, sweep.parquet, metrics.png (no pareto.png: 01_demo records no cost "
        "(size_bytes*, latency_ms*, params*, macs*) with a value (accuracy*))"), last
    assert (out / "metrics.png").read_bytes()[:4] == b"\x89PNG" and not (out / "pareto.png").exists()
    assert cli.main(["--notebooks", str(d), "list"]) == 0
    listed = capsys.readouterr().out
    assert "records: tau, accuracy_pruned" in listed and "no pareto.png (no cost with a value)" in listed
