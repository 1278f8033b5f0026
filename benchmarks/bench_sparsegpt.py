"""SparseGPT of the whole GPT: wall time, and the full criterion × pattern × seed grid of notebook 12.

    nice -n 19 .venv/bin/python benchmarks/bench_sparsegpt.py [--threads 2] [--seeds 3] [--max-tokens 8192]
                                                              [--minilm] [--gpu]

1. Time: `oneshot.prune_model(gpt, calib, "sparsegpt", amount=0.5)` and with nm=(2, 4), sequential
   (15 stages, statistics re-collected on the partly pruned model), N = 16 × T = 128 calibration
   characters; median of `--repeats` runs (goal: ≤ 60 s on 2 cores). Wanda and magnitude alongside.
2. Grid (the notebook runs a subset to fit its time budget): GPT test perplexity per character on
   `--max-tokens` held-out characters for magnitude / Wanda / SparseGPT at 50/60/70 % unstructured,
   2:4 and 4:8, every calibration seed, and the fraction of magnitude's gap to dense each closes
   (goal: ≥ 50 % at 50 % and 2:4); SparseGPT 50 % + 4-bit.
3. `--minilm`: the same grid on MiniLM, STS-B Spearman × 100 on the full test set (../shared), one
   calibration set of 32 of its sentences (sequential, as the GPT; the notebook scores a subset and
   calibrates on sentences outside it).
4. `--gpu`: where CUDA and `torch.sparse.to_sparse_semi_structured` exist, the 2:4 speed-up of fp16
   Linears of the GPT's and an LLM's shapes (skipped with a message otherwise; nothing depends on it).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from labkit import data, gpt, llm_prune, minilm, models, oneshot, text

PATTERNS = {"50%": {"amount": 0.5}, "60%": {"amount": 0.6}, "70%": {"amount": 0.7}, "2:4": {"nm": (2, 4)},
            "4:8": {"nm": (4, 8)}}


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def gpt_part(args):
    model = models.gpt(pretrained=True)
    split = data.shakespeare()
    test_ids, train_ids = text.encode(split.test), text.encode(split.train[:500_000])
    calib = {s: [text.calibration(train_ids, 16, 128, seed=s)] for s in range(args.seeds)}
    print(f"\n== GPT ({model.num_parameters():,} parameters), {args.threads} thread(s)")
    for crit in llm_prune.CRITERIA:
        for pname in ("50%", "2:4"):
            ts = [timed(lambda: oneshot.prune_model(model, calib[0], crit, **PATTERNS[pname]))[1]
                  for _ in range(args.repeats)]
            print(f"time {crit:9s} {pname}: median {statistics.median(ts):6.2f} s over {args.repeats} runs"
                  + ("  (goal ≤ 60 s)" if crit == "sparsegpt" else ""))
    ev = lambda m: gpt.evaluate(m, test_ids, max_tokens=args.max_tokens)["perplexity"]   # noqa: E731
    dense = ev(model)
    print(f"\nperplexity per character on {args.max_tokens} test characters (dense {dense:.3f}); "
          f"seeds 0..{args.seeds - 1}: mean ± std, gap closed mean (min)")
    for pname, kw in PATTERNS.items():
        mag = ev(oneshot.prune_model(model, calib[0], "magnitude", **kw)[0])
        line = f"{pname:>4}  magnitude {mag:7.3f}"
        for crit in ("wanda", "sparsegpt"):
            p = [ev(oneshot.prune_model(model, calib[s], crit, **kw)[0]) for s in calib]
            closed = [(mag - x) / (mag - dense) for x in p]
            sd = statistics.stdev(p) if len(p) > 1 else float("nan")
            line += f" | {crit} {statistics.mean(p):7.3f} ± {sd:.3f}, closed {statistics.mean(closed):4.0%} ({min(closed):4.0%})"
        print(line)
    joint = [ev(oneshot.prune_model(model, calib[s], "sparsegpt", amount=0.5, bits=4)[0]) for s in calib]
    print(f"SparseGPT 50 % + 4-bit: {statistics.mean(joint):.3f} over {len(joint)} seeds")


def minilm_part(args):
    bert = minilm.load()
    sts = data.sts_benchmark()
    pairs, scores = list(sts.pairs), sts.scores
    g = torch.Generator().manual_seed(0)
    sents = sorted({s for p in pairs for s in p})
    calib = [bert.tokenize([sents[i] for i in torch.randperm(len(sents), generator=g)[:32].tolist()])]
    dense = minilm.spearman(bert, pairs, scores)
    print(f"\n== MiniLM STS-B Spearman × 100, {len(pairs)} pairs (dense {dense:.2f}); calibration: 32 test "
          "sentences (the benchmark has no other split here)")
    for pname, kw in PATTERNS.items():
        res = {c: minilm.spearman(oneshot.prune_model(bert, calib, c, **kw)[0], pairs, scores)
               for c in llm_prune.CRITERIA}
        closed = {c: (res[c] - res["magnitude"]) / (dense - res["magnitude"]) for c in ("wanda", "sparsegpt")}
        print(f"{pname:>4}  " + "  ".join(f"{c} {v:6.2f}" for c, v in res.items())
              + "  closed " + ", ".join(f"{c} {v:.0%}" for c, v in closed.items()))


def gpu_part():
    try:
        from torch.sparse import to_sparse_semi_structured
    except ImportError:
        print("\n2:4 GPU: torch.sparse.to_sparse_semi_structured is not importable; skipped")
        return
    if not torch.cuda.is_available():
        print("\n2:4 GPU: no CUDA device; skipped (the 2:4 kernels are CUDA-only)")
        return
    print(f"\n== 2:4 on {torch.cuda.get_device_name()}, fp16, y = x Wᵀ")
    for out_, in_ in ((768, 192), (192, 768), (4096, 4096), (11008, 4096)):
        for batch in (1, 256, 4096):
            lin = torch.nn.Linear(in_, out_, bias=False).half().cuda()
            with torch.no_grad():
                lin.weight.mul_(llm_prune.nm_mask(lin.weight.abs()).half())
            x = torch.randn(batch, in_, dtype=torch.half, device="cuda")
            ms = []
            for w in (lin.weight, to_sparse_semi_structured(lin.weight)):
                f = lambda: torch.nn.functional.linear(x, w)   # noqa: E731
                for _ in range(10):
                    f()
                torch.cuda.synchronize()
                t = time.perf_counter()
                for _ in range(100):
                    f()
                torch.cuda.synchronize()
                ms.append((time.perf_counter() - t) * 10)
            print(f"W {out_}×{in_}, batch {batch}: dense {ms[0]:.4f} ms, 2:4 {ms[1]:.4f} ms, speed-up {ms[0] / ms[1]:.2f}×")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=8192)
    ap.add_argument("--minilm", action="store_true")
    ap.add_argument("--gpu", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    gpt_part(args)
    if args.minilm:
        minilm_part(args)
    if args.gpu:
        gpu_part()


if __name__ == "__main__":
    main()
