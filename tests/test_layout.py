"""The package's layout: labkit.deploy, labkit.workbook, the old names of their modules, and the import graph.

The graph is read from the source with `ast`, not by importing: every `import` and `from ... import`
in a module counts, at module level or inside a function (a function-level import only hides a
circle until the function runs), relative or absolute.
"""
import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import labkit

PACKAGE = Path(labkit.__file__).resolve().parent
MOVED = {   # old name → new place, as labkit.MOVED must say
    **{name: f"labkit.deploy.{name}" for name in ("mobilenet", "images", "pt2e", "adaround", "xnnpack", "mobile")},
    **{name: f"labkit.workbook.{name}" for name in ("cli", "sweep", "report", "students", "check", "widgets", "plots")},
    "_validate": "labkit.validate",                                              # made public
}

# Circles still to remove (issue 15): each is a set of modules that import each other. Remove an
# entry once its circle is gone — the test fails while the list names a circle that no longer is.
KNOWN_CYCLES = []
# `from module import _name` where module is not itself private (_rng, deploy/_fx): the name
# should be public in the module that owns it, or live in a private helper module. Still to fix:
KNOWN_PRIVATE_IMPORTS = []


# ---------------------------------------------------------------- the old names are the same modules
def test_moved_modules_are_at_their_new_place_and_nowhere_else():
    for name, target in MOVED.items():
        assert (PACKAGE.parent / f"{target.replace('.', '/')}.py").is_file()
        assert not (PACKAGE / f"{name}.py").exists(), f"labkit/{name}.py is back: it would shadow nothing " \
            "(the alias finder answers first) but git would no longer follow the move"
    assert labkit.MOVED == MOVED


@pytest.mark.parametrize("name", MOVED)
def test_old_name_is_the_same_module_object(name):
    package, _ = MOVED[name].rsplit(".", 1)
    new = importlib.import_module(MOVED[name])
    assert importlib.import_module(f"labkit.{name}") is new
    assert getattr(labkit, name) is new
    assert sys.modules[f"labkit.{name}"] is new
    exec(f"from labkit import {name} as old\nfrom {package} import {name} as via_package", ns := {})
    assert ns["old"] is new and ns["via_package"] is new
    assert getattr(importlib.import_module(package), name) is new


def test_a_monkeypatch_through_the_old_name_is_seen_through_the_new(monkeypatch):
    from labkit.deploy import mobilenet

    monkeypatch.setattr(labkit.mobilenet, "WEIGHTS_SHA256", "0" * 64)
    assert mobilenet.WEIGHTS_SHA256 == "0" * 64


def in_fresh_interpreter(code: str) -> None:
    """Run `code` in a new Python process from the source tree; its asserts must pass."""
    out = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]


def test_the_old_private_name_of_validate_is_the_public_module():
    """Notebooks import `labkit._validate` (until the integrator switches them): the same object."""
    code = ("from labkit._validate import check_float, check_int\n"
            "import labkit, labkit._validate, labkit.validate\n"
            "assert labkit._validate is labkit.validate and check_int is labkit.validate.check_int\n"
            "assert '_validate' not in dir(labkit) and 'validate' in dir(labkit)\n"
            "assert labkit.validate.__file__.endswith('labkit/validate.py')\n")
    in_fresh_interpreter(code)
    assert not (PACKAGE / "_validate.py").exists()


def test_old_names_first_in_a_fresh_interpreter():
    """The old name imported before the new one (as a notebook does) still gives one object."""
    code = ("import labkit.pt2e as p\nimport labkit.mobile\nfrom labkit import mobilenet\n"
            "import labkit.deploy.pt2e, labkit.deploy.mobile, labkit.deploy.mobilenet\n"
            "assert p is labkit.deploy.pt2e and labkit.mobile is labkit.deploy.mobile\n"
            "assert mobilenet is labkit.deploy.mobilenet and labkit.mobile.export is labkit.deploy.mobile.export\n"
            "assert labkit.deploy.mobile.__file__.endswith('deploy/mobile.py')\n")
    in_fresh_interpreter(code)


def test_a_notebooks_imports_in_a_fresh_interpreter():
    """What the notebooks do, `labkit.report.record(...)` and `from labkit import report, widgets,
    plots, check`, gives the modules in labkit.workbook."""
    code = ("import labkit\nrecord = labkit.report.record\n"
            "from labkit import report, widgets, plots, check\n"
            "import labkit.workbook.report, labkit.workbook.widgets, labkit.workbook.plots, labkit.workbook.check\n"
            "assert report is labkit.workbook.report and record is labkit.workbook.report.record\n"
            "assert widgets is labkit.workbook.widgets and plots is labkit.workbook.plots\n"
            "assert check is labkit.workbook.check and check.__file__.endswith('workbook/check.py')\n")
    in_fresh_interpreter(code)


# ---------------------------------------------------------------- the import graph
def _modules() -> dict[str, Path]:
    """{dotted name: file} of every module under labkit/ (a package is named by its __init__.py)."""
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _imports(name: str, path: Path, mods) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for each import of a labkit module in `path`."""
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "labkit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            if target.split(".")[0] != "labkit":
                continue
            taken = []
            for alias in node.names:
                if f"{target}.{alias.name}" in mods:      # `from pkg import submodule`
                    out.append((f"{target}.{alias.name}", [], node.lineno))
                else:
                    taken.append(alias.name)
            if taken or target in mods:
                out.append((target, taken, node.lineno))
    return out


def _graph():
    """({module: {modules it imports, and their parent packages}}, [unresolved imports])."""
    mods = _modules()
    graph, unresolved = {m: set() for m in mods}, []
    for name, path in mods.items():
        for target, _, line in _imports(name, path, mods):
            if target not in mods:
                unresolved.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
                continue
            parts = target.split(".")   # importing a.b.c runs a/__init__ and a/b/__init__ first
            graph[name] |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} - {name}
    return graph, unresolved


def _cycles(graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a sorted list:
    every module in one can reach every other by imports, so each lies on a circle."""
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v), on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                on.discard(w), comp.append(w)
            on.discard(v), comp.append(v)
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def _circle(graph, comp) -> str:
    """One circle inside a component, 'a → b → a', found by a breadth-first search from its first module."""
    start, members = comp[0], set(comp)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(graph[path[-1]] & members):
            if w == start:
                return " → ".join(path + [start])
            if w not in seen:
                seen.add(w), paths.append(path + [w])
    return " ↔ ".join(comp)


def test_every_intra_package_import_names_a_real_module():
    """Inside labkit, code imports modules at their place (labkit.deploy.mobile), never by an old
    name that only the alias finder answers (labkit.mobile)."""
    assert _graph()[1] == []


def test_the_import_graph_has_no_circle_but_the_known_ones():
    graph, _ = _graph()
    found = _cycles(graph)
    new = [c for c in found if set(c) not in KNOWN_CYCLES]
    assert not new, "import circles: " + "; ".join(_circle(graph, c) for c in new)
    gone = [c for c in KNOWN_CYCLES if sorted(c) not in found]
    assert not gone, f"these circles are gone, remove them from KNOWN_CYCLES: {gone}"


def test_the_checker_finds_a_circle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _circle(graph, ["a", "b", "c"]) == "a → b → c → a"
    src = "def f():\n    from .b import g\n"
    tree = [n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom)]
    assert tree and tree[0].level == 1   # ast.walk reaches imports inside functions


def test_deploy_and_models_have_no_circle():
    graph, _ = _graph()
    mine = {m for m in graph if m.startswith("labkit.deploy") or m in ("labkit.models", "labkit._rng")}
    assert not [c for c in _cycles(graph) if mine & set(c)]
    assert "labkit.models" not in graph["labkit.deploy.mobilenet"]


def test_the_workbook_imports_run_one_way():
    """cli → sweep → runner → report: no module of the chain imports one before it, and the
    workbook is on no circle."""
    graph, _ = _graph()
    chain = [f"labkit.workbook.{m}" for m in ("cli", "sweep", "runner", "report")]
    for i, module in enumerate(chain):
        assert not graph[module] & set(chain[:i]), f"{module} imports {graph[module] & set(chain[:i])}"
        assert i == 0 or module in graph[chain[i - 1]]
    mine = {m for m in graph if m.startswith("labkit.workbook")}
    assert not [c for c in _cycles(graph) if mine & set(c)]


def test_no_module_imports_a_private_name_of_a_public_module():
    mods = _modules()
    found = []
    for name, path in mods.items():
        for target, taken, _ in _imports(name, path, mods):
            if not target.split(".")[-1].startswith("_"):
                found += [(name, target, n) for n in taken if n.startswith("_") and not n.startswith("__")]
    assert sorted(found) == sorted(KNOWN_PRIVATE_IMPORTS), \
        "import the public name, or move the helper to a private module (_rng, deploy/_fx)"
