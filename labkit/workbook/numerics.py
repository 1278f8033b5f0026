"""The one reference numeric environment: where the notebooks' stored outputs are made and checked.

A float32 result depends on which SIMD kernels torch runs (AVX2, AVX-512, NEON) and on how many
threads split a reduction; thirty epochs of training turn a last-bit difference into a different
third decimal. So the stored outputs are made, and compared cell by cell, in one environment:

    x86-64, ATen / MKL / oneDNN held to AVX2 (every x86-64 CPU since 2013 has it), one thread.

`REFERENCE` holds the environment variables that select it; they act only in a process that has not
imported torch yet, so they are given to the kernels (nbval, papermill, tools/nb.py), never set
inside one. Whether this machine reproduces the reference: `describe_in(REFERENCE)` runs `describe()`
in a fresh process and `differences()` compares it with `EXPECTED`, whose `probe` is the sha256 of a
few training steps through the kernels the notebooks use (MKL's sgemm, oneDNN's convolution, ATen's
vectorized elementwise ops and Adam). Where the probe differs (ARM, Apple silicon, an MKL that
dispatches differently, a torch that ignores the pins), only the cells tagged machine-independent
are compared and every asserted claim still runs (conftest.py says so in one line).

`PERTURBED` is a deliberately different environment (no SIMD in ATen, SSE4.2 in MKL, two threads):
every notebook must pass all its asserts there too, or its claims were never robust.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys

from ..validate import check_choice
from ._args import check_dict

REFERENCE = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    # labkit's own kernel choices (ONNX Runtime U8S8 vs U8U8, deploy.mobile.cpu_features) see an
    # AVX2-only x86 too: ONNX Runtime's MLAS cannot be held to AVX2, but its exact U8U8 path gives
    # the same integers on every CPU
    "LABKIT_CPU_FLAGS": "avx2",
}
PERTURBED = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
    # two test workers x two threads on two cores: waiting threads sleep instead of spinning, or
    # every small parallel op waits a time slice for a descheduled thread (timing only, not numerics)
    "OMP_WAIT_POLICY": "PASSIVE",
}
ENVIRONMENTS = {"reference": REFERENCE, "perturbed": PERTURBED, "native": {}}

# What describe() prints in the reference environment (made on an AVX2-only AMD EPYC; the same
# with the pins on an AVX-512 one, where all stored cells then matched too).
EXPECTED = {"torch": "2.13.0+cpu", "machine": "x86_64", "isa": "AVX2", "threads": 1,
            "probe": "5677b21ea755da15"}


def environment(name: str = "reference") -> dict[str, str]:
    """The environment variables of 'reference', 'perturbed' or 'native' (the machine's own)."""
    check_choice(name, "name", "environment", tuple(ENVIRONMENTS))
    return dict(ENVIRONMENTS[name])


def probe() -> str:
    """sha256 (16 hex digits) of the weights after 3 Adam steps of a tiny conv + MLP + LayerNorm net.

    Bitwise: it changes with the SIMD kernels and the thread count, as the notebooks' outputs do.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 1, 12, 12, generator=g)                  # (N, C, H, W)
    y = torch.randint(0, 10, (32,), generator=g)
    conv = nn.Conv2d(1, 8, 3)
    lin1, lin2 = nn.Linear(8 * 10 * 10, 384), nn.Linear(384, 10)
    norm = nn.LayerNorm(384)
    params = [p for m in (conv, lin1, lin2, norm) for p in m.parameters()]
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(3):
        h = F.relu(conv(x)).flatten(1)                              # (32, 800)
        h = F.gelu(norm(lin1(h)))                                   # (32, 384)
        loss = F.cross_entropy(lin2(h).softmax(-1).log(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    digest = hashlib.sha256()
    for p in params:
        digest.update(p.detach().numpy().tobytes())
    return digest.hexdigest()[:16]


def describe() -> dict:
    """This process's numeric environment: torch version, machine, ATen's ISA, threads, probe."""
    import torch

    return {"torch": torch.__version__, "machine": platform.machine(),
            "isa": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "probe": probe()}


def describe_in(env: dict[str, str]) -> dict:
    """describe() run in a fresh Python process whose environment is os.environ updated by `env`."""
    check_dict(env, "env", "describe_in", "a dict {variable: str value}", values=str)
    code = "import json, labkit.workbook.numerics as n; print(json.dumps(n.describe()))"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"could not describe the numeric environment: {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def differences(found: dict, expected: dict = EXPECTED) -> list[str]:
    """['isa AVX512 (reference AVX2)', ...]: what makes `found` another environment; [] if none."""
    check_dict(found, "found", "differences", "a dict as describe() returns")
    check_dict(expected, "expected", "differences", "a dict as describe() returns")
    return [f"{k} {found.get(k)!r} (reference {v!r})" for k, v in expected.items() if found.get(k) != v]


def summary(found: dict) -> str:
    """'torch 2.13.0+cpu, x86_64, AVX2, 1 thread' for a describe() result."""
    check_dict(found, "found", "summary", "a dict as describe() returns")
    threads = found.get("threads")
    return (f"torch {found.get('torch')}, {found.get('machine')}, {found.get('isa')}, "
            f"{threads} thread{'s' * (threads != 1)}")
