"""Graph and import helpers that the modules of labkit.deploy share (private to the subpackage).

- `op(node)`: the aten op a torch.fx node calls ('conv2d'), '' for a non-call.
- `CLAMPS`: the ops that clamp a layer's output (ReLU6 is aten's hardtanh).
- `in_modules(node, names)`, `under(name, names)`: whether a node of an exported graph, or a submodule,
  comes from one of the named submodules.
- `need(module)`: import an optional runtime (ExecuTorch, ONNX Runtime) or say how to install it.
"""
from __future__ import annotations

import importlib
import logging

INSTALL = "executorch==1.5.1 torchao==0.18.0"
CLAMPS = ("hardtanh", "hardtanh_", "relu", "relu_")


def need(module: str, pip: str = INSTALL):
    """Import `module` (for ExecuTorch also torchao's PT2E), or say how to install it. torchao's
    'Failed to load <CUDA kernel library>' notes and torch's deprecation note about its enums,
    logged once at import on a CPU-only machine, are kept out of the notebook's output."""
    quiet = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.ERROR)
    try:
        mod = importlib.import_module(module)
        if module == "executorch":
            importlib.import_module("torchao.quantization.pt2e.quantize_pt2e")
            importlib.import_module("executorch.backends.xnnpack.quantizer.xnnpack_quantizer")
        return mod
    except ImportError as e:
        raise ImportError(f"labkit needs {module!r}: pip install {pip}") from e
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)


def op(node) -> str:
    """'conv2d' for the node calling torch.ops.aten.conv2d.default; '' for a non-call."""
    return node.target.__name__.split(".")[0] if node.op == "call_function" and hasattr(node.target, "__name__") else ""


def in_modules(node, names) -> bool:
    """Whether torch.fx node `node` of an exported graph comes from (a submodule of) one of the
    modules `names` ("features.0"), by the nn_module_stack that torch.export records."""
    return any(under(path, names) for path, _ in node.meta.get("nn_module_stack", {}).values())


def under(name: str, names) -> bool:
    """Whether the submodule named `name` is one of `names` or inside one ("features.0.conv" is
    under "features.0"; "features.10" is not)."""
    return any(name == n or name.startswith(n + ".") for n in names)
