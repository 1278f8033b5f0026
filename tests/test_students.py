"""Student notebooks: solutions stubbed, their outputs cleared, and the notebook still runs."""
import nbformat
import pytest

from conftest import NOTEBOOKS
from labkit import students

SOLUTION = '''def my_threshold(w, tau):
    # BEGIN SOLUTION
    return w.masked_fill(w.abs() < tau, 0)
    # END SOLUTION

check.threshold(my_threshold)'''


def test_regions_become_stubs_at_their_indentation():
    source, n = students.strip_solutions(SOLUTION)
    assert n == 1
    assert source == ('def my_threshold(w, tau):\n    # YOUR CODE HERE\n    raise NotImplementedError\n\n'
                      'check.threshold(my_threshold)')
    assert "masked_fill" not in source


def test_bad_markers_are_reported():
    with pytest.raises(ValueError, match="never closed"):
        students.strip_solutions("# BEGIN SOLUTION\nx = 1")
    with pytest.raises(ValueError, match="without '# BEGIN SOLUTION'"):
        students.strip_solutions("x = 1\n# END SOLUTION")


def test_outputs_of_solution_cells_are_cleared_and_others_kept():
    nb = nbformat.v4.new_notebook()
    keep = nbformat.v4.new_code_cell("print(1)")
    keep.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    sol = nbformat.v4.new_code_cell(SOLUTION)
    sol.outputs = [nbformat.v4.new_output("stream", text="✓ threshold: all 23 cases passed\n")]
    nb.cells = [keep, sol]
    student, n = students.make_student(nb)
    assert n == 1 and student.cells[0].outputs == keep.outputs and student.cells[1].outputs == []
    assert nb.cells[1].source == SOLUTION                      # the solution notebook is not touched


def test_every_solution_notebook_with_exercises_generates(tmp_path):
    made = students.generate(NOTEBOOKS, tmp_path)
    assert made["01_sparsity_and_threshold_pruning"] >= 1
    for name, n in made.items():
        text = (tmp_path / f"{name}.ipynb").read_text()
        assert "BEGIN SOLUTION" not in text and text.count("raise NotImplementedError") >= n


WITH_EXERCISES = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]*_*.ipynb")
                        if "# BEGIN SOLUTION" in p.read_text())


def test_every_teaching_notebook_has_a_coded_exercise():
    """Issue 17: an exercise in the flow of every notebook 00-10 (appendices such as 08b may have none)."""
    numbered = {p.name[:2] for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    assert numbered and numbered <= {name[:2] for name in WITH_EXERCISES}, sorted(numbered - {n[:2] for n in WITH_EXERCISES})


@pytest.mark.notebook
@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_student_notebook_runs_unsolved(name, tmp_path):
    import papermill

    students.generate(NOTEBOOKS, tmp_path)
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(tmp_path / f"{name}.ipynb"), str(out), parameters={"smoke": True},
                               cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False)
    text = out.read_text()
    n = students.make_student(nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4))[1]
    assert text.count("not implemented yet") == n and "✓" not in text
