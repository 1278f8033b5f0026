"""What unstructured sparsity buys on a CPU: torch.sparse CSR matmul against the dense Linear.

    nice -n 19 .venv/bin/python benchmarks/bench_sparse_cpu.py [--threads 1] [--min-time 0.2]

For Linear weights W (out, in) of the transformers' shapes (768×192: the GPT's MLP up-projection,
384×1536: MiniLM's down-projection) at batch sizes 1 and 256, and unstructured sparsity 50…99 %
(random masks: the position of the zeros, not the criterion, sets the speed):

    dense   y = F.linear(x, W)                       (MKL/oneDNN sgemm, fp32)
    CSR     y = (W_csr @ xᵀ)ᵀ, W_csr = W.to_sparse_csr()   (torch.sparse, int64 indices)

Printed: the time of each (torch.utils.benchmark, same run, same threads; the machine is shared,
so each is measured in `--rounds` interleaved rounds and the fastest round is kept, the
estimate least disturbed by other processes; the dense product, the same at every sparsity, is
the fastest over all rows and rounds), the ratio dense / CSR (> 1: CSR faster), the
crossover (the lowest sparsity from which on CSR is faster at every measured point, interpolated
linearly from the point below), and the bytes of each format from
labkit.llm_prune.compressed_bytes checked against the tensors torch actually holds.
Then what torch's 2:4 kernels say on this machine: `to_sparse_semi_structured` is CUDA-only.
"""
from __future__ import annotations

import argparse
import platform
import warnings

import torch
import torch.nn.functional as F
from torch.utils import benchmark

from labkit import llm_prune

SHAPES = ((768, 192), (384, 1536))
BATCHES = (1, 256)
SPARSITIES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


def seconds(stmt, min_time: float, threads: int, **env) -> float:
    t = benchmark.Timer(stmt=stmt, globals=env, num_threads=threads)
    return t.blocked_autorange(min_run_time=min_time).median


def random_sparse(out: int, inp: int, sparsity: float, gen) -> torch.Tensor:
    W = torch.randn(out, inp, generator=gen)
    k = round(sparsity * W.numel())
    drop = torch.randperm(W.numel(), generator=gen)[:k]
    W.view(-1)[drop] = 0.0
    return W


def crossover(points: list[tuple[float, float]]) -> str:
    """The sparsity from which on dense / CSR ≥ 1 at every measured point (linear from the point below)."""
    i = len(points)
    while i > 0 and points[i - 1][1] >= 1:
        i -= 1
    if i == len(points):
        return "none up to 99 %"
    if i == 0:
        return f"≤ {points[0][0]:.0%}"
    (s0, r0), (s1, r1) = points[i - 1], points[i]
    return f"{s0 + (1 - r0) * (s1 - s0) / (r1 - r0):.1%}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-time", type=float, default=0.05, help="seconds of timing per measurement")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds; the fastest is kept")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} thread(s), MKL {torch.backends.mkl.is_available()}, fp32")
    summary = []
    for out, inp in SHAPES:
        for batch in BATCHES:
            x = torch.randn(batch, inp, generator=gen)
            print(f"\nW {out}×{inp}, batch {batch}")
            print(f"{'sparsity':>9} {'dense µs':>10} {'CSR µs':>10} {'dense/CSR':>10}"
                  f" {'dense B':>9} {'CSR B':>9} {'2:4 B':>8}")
            layers = []
            for s in SPARSITIES:
                W = random_sparse(out, inp, s, gen)
                W_csr = W.to_sparse_csr()
                assert torch.allclose(F.linear(x, W), (W_csr @ x.t()).t(), atol=1e-4), "CSR and dense disagree"
                layers.append((s, W, W_csr, [float("inf")] * 2))
            for _ in range(args.rounds):                  # interleaved: a burst of load hits both alike
                for s, W, W_csr, best in layers:
                    best[0] = min(best[0], seconds("F.linear(x, W)", args.min_time, args.threads, F=F, x=x, W=W))
                    best[1] = min(best[1], seconds("(W_csr @ x.t()).t()", args.min_time, args.threads,
                                                   x=x, W_csr=W_csr))
            t_dense = min(best[0] for *_, best in layers)   # the same dense product in every row: pooled
            spread = max(best[0] for *_, best in layers) / t_dense
            points = []
            for s, W, W_csr, (_, t_csr) in layers:
                held = sum(t.numel() * t.element_size() for t in
                           (W_csr.crow_indices(), W_csr.col_indices(), W_csr.values()))
                b = llm_prune.compressed_bytes(W, value_bits=32, index_bits=64)   # torch: fp32, int64
                assert b["csr"] == held, (b["csr"], held)
                b24 = llm_prune.nm_bytes(W * llm_prune.nm_mask(W.abs()), value_bits=32)
                points.append((s, t_dense / t_csr))
                print(f"{s:>9.0%} {t_dense * 1e6:>10.1f} {t_csr * 1e6:>10.1f} {t_dense / t_csr:>10.2f}"
                      f" {b['dense']:>9} {b['csr']:>9} {b24:>8}")
            print(f"  (dense: the fastest of {args.rounds * len(layers)} measurements; the rows' own fastest "
                  f"spread {spread:.1f}× on this shared machine)")
            summary.append((out, inp, batch, crossover(points), points[-1][1]))
    print("\ncrossover (the sparsity from which on CSR beats dense; 2:4 is 50 %):")
    for out, inp, batch, cross, best in summary:
        print(f"  W {out}×{inp} batch {batch:>3}: {cross:>16}   dense/CSR at 99 %: {best:.2f}")
    print("\nbytes (fp32 values, torch's int64 CSR indices) are checked equal to the tensors torch holds;")
    print("2:4 column: the NVIDIA-style format (values + 2-bit index per kept value), fp32 values.")
    print("\ntorch's 2:4 kernels on this CPU:")
    try:
        torch.sparse.to_sparse_semi_structured(torch.randn(64, 64) * llm_prune.nm_mask(torch.rand(64, 64)))
        print("  to_sparse_semi_structured worked (unexpected on a CPU)")
    except Exception as e:  # noqa: BLE001 — we print what torch says
        print(f"  torch.sparse.to_sparse_semi_structured → {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
