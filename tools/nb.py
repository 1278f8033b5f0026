"""Authoring aid for the committed notebooks (not part of labkit's API).

    python tools/nb.py py2nb  SRC.py  notebooks/NN_name.ipynb   # percent-format script → notebook
    python tools/nb.py nb2py  notebooks/NN_name.ipynb  SRC.py   # and back, to edit as text
    python tools/nb.py execute notebooks/NN_name.ipynb [...]     # run headless, store outputs

Percent format: `# %%` starts a code cell, `# %% [markdown]` a markdown cell (its lines start
with "# "), `# %% tags=["parameters"]` a code cell with tags. `execute` runs each notebook from
notebooks/ with HEADLESS_ENV (the way nbval and the tests run it) and writes it back,
so the stored outputs are the ones nbval will compare.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

# The environment nbval runs the notebooks in (tests/conftest.py sets the same): headless
# widgets, and one thread per kernel so that two test workers share two cores without
# oversubscription and the stored floating-point results match the ones nbval recomputes.
HEADLESS_ENV = {"LABKIT_HEADLESS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

HEADER = re.compile(r"^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


def py2nb(src: str, dest: str) -> None:
    cells, kind, tags, lines = [], None, [], []

    def flush():
        if kind is None:
            return
        text = "\n".join(lines).strip("\n")
        if kind == "markdown":
            text = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in text.split("\n"))
            cells.append(nbformat.v4.new_markdown_cell(text))
        else:
            cell = nbformat.v4.new_code_cell(text)
            if tags:
                cell.metadata["tags"] = tags
            cells.append(cell)

    for line in Path(src).read_text(encoding="utf-8").split("\n"):
        m = HEADER.match(line)
        if m:
            flush()
            kind = "markdown" if m.group("md") else "code"
            tags = json.loads(m.group("tags")) if m.group("tags") else []
            lines = []
        else:
            lines.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, dest)


def nb2py(src: str, dest: str) -> None:
    nb = nbformat.read(src, as_version=4)
    out = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            out.append("# %% [markdown]")
            out.extend("# " + l if l else "#" for l in cell.source.split("\n"))
        else:
            tags = cell.metadata.get("tags", [])
            out.append("# %%" + (f" tags={json.dumps(tags)}" if tags else ""))
            out.append(cell.source)
        out.append("")
    Path(dest).write_text("\n".join(out), encoding="utf-8")


def execute(path: str, timeout: int = 900) -> float:
    os.environ.update(HEADLESS_ENV)
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(Path(path).resolve().parent)}}).execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:                      # keep diffs small: no per-run metadata
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    return seconds


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "py2nb":
        py2nb(*args)
    elif cmd == "nb2py":
        nb2py(*args)
    elif cmd == "execute":
        for p in args:
            print(f"{p}: {execute(p):.1f} s")
    else:
        sys.exit(__doc__)
