"""Bad input never escapes raw: every public function of every labkit module, found by
introspection (so a function added later is covered without anyone remembering to), is called with
each of eight bad values for its required arguments. It must raise labkit's TypeError/ValueError
("The 'x' parameter of f must be ..."), a FileNotFoundError naming the path where a path is asked
for, or accept the value where it declares so beside its code (`labkit.validate.accepts`).
"""
import importlib
import inspect
import math
import pkgutil
import re
import signal
import warnings

import pytest
import torch

import labkit
from labkit.validate import BAD_KINDS

BAD = {"none": None, "negative": -1, "str": "x", "nan": math.nan, "empty": torch.empty(0),
       "nan_tensor": torch.tensor([math.nan, 1.0]), "list": [], "large": 10**9}
assert tuple(BAD) == BAD_KINDS
FORM = re.compile(r"The '\w+' parameter of [\w.]+ must be ")
SECONDS = 5                                            # per call; the whole test stays under 30 s


def public_functions():
    found = {}
    for info in pkgutil.walk_packages(labkit.__path__, "labkit."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        module = importlib.import_module(info.name)
        for name, fn in list(vars(module).items()):
            if not name.startswith("_") and inspect.isfunction(fn) and fn.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = fn
    return found


def required(fn):
    params = inspect.signature(fn).parameters.values()
    return [p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


FUNCTIONS = {k: f for k, f in public_functions().items() if required(f)}


class Slow(Exception):
    pass


def outcome(fn, value):
    """'named', 'accepted', or 'raw: <what escaped>' for fn(value, value, ...)."""
    def alarm(*_):
        raise Slow()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(SECONDS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(*[value] * len(required(fn)))
        return "accepted"
    except Slow:
        return f"raw: still running after {SECONDS} s"
    except (TypeError, ValueError) as e:
        return "named" if FORM.search(str(e)) else f"raw: {type(e).__name__}: {str(e)[:120]}"
    except FileNotFoundError as e:
        return "named" if str(value) in str(e) else f"raw: FileNotFoundError: {e}"
    except Exception as e:  # noqa: BLE001 — anything else escaped raw
        return f"raw: {type(e).__name__}: {str(e)[:120]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_the_public_api_is_found_by_introspection():
    names = set(FUNCTIONS)
    for expected in ("labkit.prune.threshold", "labkit.quantize.quantize", "labkit.deploy.mobile.export",
                     "labkit.stats.wilson_interval", "labkit.workbook.runner.run_notebook"):
        assert expected in names, expected
    assert len(names) > 100, len(names)


@pytest.mark.parametrize("qualname", sorted(FUNCTIONS))
def test_bad_input_is_refused_by_name_or_declared(qualname, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                      # a function that writes writes here
    fn = FUNCTIONS[qualname]
    declared = getattr(fn, "__labkit_accepts__", {})
    problems = []
    for kind, value in BAD.items():
        got = outcome(fn, value)
        if got.startswith("raw"):
            problems.append(f"{kind}: {got}")
        elif got == "accepted" and kind not in declared:
            problems.append(f"{kind}: accepted silently (refuse it, or declare @accepts({kind}=why))")
        elif got == "named" and kind in declared:
            problems.append(f"{kind}: declared as accepted but refused (drop it from @accepts)")
    assert not problems, f"{qualname}: " + "; ".join(problems)
