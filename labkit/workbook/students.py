"""Student notebooks generated from the solution notebooks (one source of truth).

Marker form, in a code cell of a solution notebook:

    def my_threshold(w, tau):
        # BEGIN SOLUTION
        return w.masked_fill(w.abs() < tau, 0)
        # END SOLUTION

    check.threshold(my_threshold)

`make_student(nb)` replaces each region between the two marker lines by

        # YOUR CODE HERE
        raise NotImplementedError

at the marker's indentation, and clears the outputs of every cell that held a solution, so
neither the code nor what it printed is given away. The check then reports "not implemented
yet" and the notebook still runs to the end. Other cells keep their outputs.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

from ..validate import accepts
from ._args import check_folder, check_notebook, check_str

BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")


@accepts(str="'x' is a cell source with no solution region: it comes back as it is, 0 regions")
def strip_solutions(source: str) -> tuple[str, int]:
    """(source with each solution region replaced by a stub, number of regions)."""
    check_str(source, "source", "strip_solutions")
    out, inside, regions = [], False, 0
    for number, line in enumerate(source.split("\n"), 1):
        begin = BEGIN.match(line)
        if begin:
            if inside:
                raise ValueError(f"line {number}: '# BEGIN SOLUTION' inside another solution region")
            inside, regions = True, regions + 1
            indent = begin.group("indent")
            out += [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError"]
        elif END.match(line):
            if not inside:
                raise ValueError(f"line {number}: '# END SOLUTION' without '# BEGIN SOLUTION'")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("a '# BEGIN SOLUTION' region is never closed by '# END SOLUTION'")
    return "\n".join(out), regions


def make_student(nb) -> tuple[object, int]:
    """A student copy of a solution notebook (nbformat node) and its number of exercises."""
    check_notebook(nb, "nb", "make_student")
    student = nbformat.from_dict(nb)
    total = 0
    for cell in student.cells:
        if cell.cell_type != "code":
            continue
        source, regions = strip_solutions(cell.source)
        if regions:
            cell.source, cell.outputs, cell.execution_count = source, [], None
            total += regions
    return student, total


def generate(notebooks_dir: Path, out_dir: Path) -> dict[str, int]:
    """Write a student version of every numbered notebook into out_dir; {name: exercises}."""
    notebooks_dir = check_folder(notebooks_dir, "notebooks_dir", "generate")
    out_dir = check_folder(out_dir, "out_dir", "generate", exists=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    made = {}
    for path in sorted(notebooks_dir.glob("[0-9][0-9]*_*.ipynb")):   # 08b_*: appendices too
        student, n = make_student(nbformat.read(path, as_version=4))
        nbformat.write(student, out_dir / path.name)
        made[path.stem] = n
    return made
