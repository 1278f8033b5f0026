"""Authoring aid for the committed notebooks (not part of labkit's API).

    python tools/nb.py py2nb  SRC.py  notebooks/NN_name.ipynb   # percent-format script → notebook
    python tools/nb.py nb2py  notebooks/NN_name.ipynb  SRC.py   # and back, to edit as text
    python tools/nb.py execute notebooks/NN_name.ipynb [...]     # run headless, store outputs
    python tools/nb.py classify DIR notebooks/NN_name.ipynb [...] # tag machine-independent cells

Percent format: `# %%` starts a code cell, `# %% [markdown]` a markdown cell (its lines start
with "# "), `# %% tags=["parameters"]` a code cell with tags. `execute` runs each notebook from
notebooks/ in the reference numeric environment (labkit.workbook.numerics, the one nbval and the
tests use), refuses to where this machine does not reproduce it, writes the notebook back and
records the environment in its metadata (tests/test_numerics.py fails on any other). It stores
the outputs as they stand when the run is over (`settle`): no progress-bar frames.

`classify DIR` compares each code cell's outputs (sanitized as nbval does) with those of the same
notebook executed elsewhere (DIR/<name>.ipynb, e.g. in the perturbed environment; several DIRs
separated by commas) and tags the cells whose outputs were the same everywhere
`nbval-check-output`: the cells nbval still compares where the reference cannot be reproduced.
"""
from __future__ import annotations

import configparser
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

from labkit.workbook import numerics

ROOT = Path(__file__).resolve().parent.parent
CHECK_TAG = "nbval-check-output"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

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


def settle(nb) -> None:
    """Each cell's outputs as a reader finds them when the run is over, in place: consecutive
    chunks of a stream joined and each line at its final state (a console progress bar's last
    frame, not every frame), and no widget view: the stored notebook keeps no widget state, so a
    view could show only its text fallback, frozen at its first frame ("epochs: 0%| | 0/30")."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET_VIEW not in o.get("data", {})]
            CoalesceStreamsPreprocessor().preprocess_cell(cell, {}, 0)


def execute(path: str, timeout: int = 900) -> float:
    os.environ.update({"LABKIT_HEADLESS": "1", **numerics.REFERENCE})
    found = numerics.describe_in({})
    if numerics.differences(found):
        sys.exit(f"not the reference numeric environment here ({'; '.join(numerics.differences(found))}): "
                 "stored outputs are made only where it is reproduced (labkit/workbook/numerics.py)")
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(Path(path).resolve().parent)}}).execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:                      # keep diffs small: no per-run metadata
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    settle(nb)
    nb.metadata["labkit"] = {"numerics": found}
    nbformat.write(nb, path)
    return seconds


def sanitizers() -> list[tuple[re.Pattern, str]]:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "tests" / "nbval_sanitize.cfg")
    return [(re.compile(cfg[s]["regex"]), cfg[s]["replace"]) for s in cfg.sections()]


def comparable(cell, subs) -> list:
    """A cell's outputs as nbval compares them: text and non-image data, sanitized."""
    out, merged = [], []
    for o in cell.get("outputs", []):             # consecutive stream chunks as one, as nbval does
        if merged and o.get("output_type") == "stream" and merged[-1].get("output_type") == "stream" \
                and merged[-1].get("name") == o.get("name"):
            merged[-1] = {**merged[-1], "text": merged[-1]["text"] + o["text"]}
        else:
            merged.append(o)
    for o in merged:
        items = {"text": o["text"]} if "text" in o else {
            k: v for k, v in o.get("data", {}).items() if not k.startswith("image/")}
        if "ename" in o:
            items["ename"] = o["ename"]
        for key, value in items.items():
            value = "".join(value) if isinstance(value, list) else value
            if isinstance(value, str):
                for pattern, replace in subs:
                    value = pattern.sub(replace, value)
            out.append((key, value))
    return out


def classify(dirs: str, path: str) -> tuple[int, int]:
    """Tag the cells of `path` whose outputs equal those of DIR/<name>.ipynb for every DIR."""
    nb = nbformat.read(path, as_version=4)
    others = [nbformat.read(Path(d) / Path(path).name, as_version=4) for d in dirs.split(",")]
    subs = sanitizers()
    codes = [[c for c in o.cells if c.cell_type == "code"] for o in others]
    n = sum(c.cell_type == "code" for c in nb.cells)
    if any(len(code) != n for code in codes):
        sys.exit(f"{path}: the executed copies have another number of code cells")
    tagged = total = 0
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        tags = [t for t in cell.metadata.get("tags", []) if t != CHECK_TAG]
        same = all(comparable(code[i], subs) == comparable(cell, subs) for code in codes)
        if same and "NBVAL_IGNORE_OUTPUT" not in cell.source:
            tags.append(CHECK_TAG)
            tagged += 1
        total += 1
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
    nbformat.write(nb, path)
    return tagged, total


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "py2nb":
        py2nb(*args)
    elif cmd == "nb2py":
        nb2py(*args)
    elif cmd == "execute":
        for p in args:
            print(f"{p}: {execute(p):.1f} s")
    elif cmd == "classify":
        for p in args[1:]:
            tagged, total = classify(args[0], p)
            print(f"{p}: {tagged} of {total} code cells machine-independent")
    else:
        sys.exit(__doc__)
