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
    assert (out / "pareto.png").stat().st_size > 0
    assert "FAILED a=-1" in capsys.readouterr().err
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
