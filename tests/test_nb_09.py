import pandas as pd
import papermill
import pytest

from conftest import outputs_text


@pytest.mark.notebook
def test_09_runs_with_a_method_subset_and_a_sweep_table(run_notebook, tmp_path):
    csv = tmp_path / "sweep.csv"
    pd.DataFrame({"tau": [0.02, 0.05], "status": ["ok", "ok"], "accuracy": [0.97, 0.5],
                  "size_bytes": [10_000, 20_000]}).to_csv(csv, index=False)
    nb = run_notebook("09", methods="int8,kmeans4,prune+int8", sweep_csv=str(csv), seed=1, smoke=True)
    text = outputs_text(nb)
    assert "int8" in text and "kmeans4" in text and "prune+int8" in text
    assert "lowrank" not in text and "gradual" not in text     # prune+int8 builds on gradual, not shown
    assert "no runtime: decoded to float" in text              # k-means: no latency of its own
    assert "budget:" in text                                   # the challenge's check ran
    assert "on the accuracy-vs-size front: sweep: tau=0.02" in text, text[text.find("front") - 300:]  # 10 kB at 97 %: it dominates


@pytest.mark.notebook
def test_09_rejects_an_unknown_method(run_notebook):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("09", methods="prune,huffman", smoke=True)
    assert "The 'methods' parameter of 09_compression_report must name methods among" in e.value.evalue
