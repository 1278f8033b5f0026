"""The weight-only goals table of issue 18 on the shipped GPT, in one run:

    nice -n 19 .venv/bin/python benchmarks/bench_llm_weight.py [--tokens 16384] [--seeds 3]

  - test perplexity (first --tokens characters of the held-out plays) of fp32, RTN, GPTQ
    (H from fp32, and sequential as the reference) and AWQ (with its clipping search, the
    default, and without: AWQ-noclip) × bits {4, 3, 2} × group {64, 128},
    symmetric ("restricted") grid, over --seeds calibration seeds (16 × 128 characters of the
    training plays), mean ± std, and the fraction of RTN's gap to fp32 each closes, with the
    paired standard error of RTN's gap (the same windows for every model);
  - GPTQ whole-model time (1 thread);
  - the int4 MatMulNBits MLP: weight bytes vs fp32 and one-token latency vs fp32 and vs the
    roofline bound bytes / bandwidth (bandwidth measured here by a 128 MB copy).
"""
from __future__ import annotations

import argparse
import copy
import math
import time

import torch

from labkit import activations, awq, count, data, gpt, gptq, models, text
from labkit import quantize as Q
from labkit.deploy import int4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--sequential", action="store_true", help="also run GPTQ sequential=True")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = models.gpt(pretrained=True)
    split = data.shakespeare()
    test, train = text.encode(split.test), text.encode(split.train[:500_000])
    X, Y = gpt.windows(test, model.config.block_size, a.tokens)

    @torch.no_grad()
    def losses(m):
        return torch.nn.functional.cross_entropy(torch.cat([m(X[i:i + 32]) for i in range(0, len(X), 32)])
                                                 .double().transpose(1, 2), Y, reduction="none").mean(1)

    base = losses(model)
    fp = math.exp(base.mean().item())
    print(f"fp32 perplexity {fp:.4f} on {Y.numel()} characters")

    def rtn_model(b, g):
        q = copy.deepcopy(model)
        with torch.no_grad():
            for lin in activations.linears(q).values():
                lin.weight.copy_(Q.groupwise(lin.weight, b, g, "restricted"))
        return q

    print("bits group method     ppl mean ± std   closed mean [min, max]   (RTN gap, paired se)")
    t_gptq = []
    for b in (4, 3, 2):
        for g in (64, 128):
            w = losses(rtn_model(b, g))
            rtn = math.exp(w.mean().item())
            se = ((w - base).std() / math.sqrt(len(w))).item()
            print(f"{b:4d} {g:5d} RTN      {rtn:8.4f}                 (gap {rtn - fp:+.4f}, "
                  f"{(math.log(rtn) - math.log(fp)) / se:+.1f} se)")
            methods = {"GPTQ": [], "AWQ": [], "AWQ-noclip": []} | ({"GPTQ-seq": []} if a.sequential else {})
            for s in range(a.seeds):
                cal = [text.calibration(train, 16, 128, seed=s)]
                t = time.perf_counter()
                methods["GPTQ"].append(gptq.quantize_model(model, cal, b, g, "restricted"))
                t_gptq.append(time.perf_counter() - t)
                methods["AWQ"].append(awq.quantize_model(model, cal, b, g, "restricted"))
                methods["AWQ-noclip"].append(awq.quantize_model(model, cal, b, g, "restricted", clip=False))
                if a.sequential:
                    methods["GPTQ-seq"].append(gptq.quantize_model(model, cal, b, g, "restricted", sequential=True))
            for name, qs in methods.items():
                p = torch.tensor([math.exp(losses(q).mean().item()) for q in qs])
                closed = (rtn - p) / (rtn - fp)
                print(f"{b:4d} {g:5d} {name:8s} {p.mean():8.4f} ± {p.std() if len(p) > 1 else 0:.4f}   "
                      f"{closed.mean():+.2f} [{closed.min():+.2f}, {closed.max():+.2f}]")
    print(f"GPTQ whole GPT (16 Linears, 1 thread): median {sorted(t_gptq)[len(t_gptq) // 2]:.2f} s")

    src = torch.empty(32 * 2 ** 20)
    dst = torch.empty_like(src)
    bw = 2 * src.numel() * 4 / (count.timing(count.time_calls(lambda: dst.copy_(src), 5, 1), 1)["median_ms"] / 1e3)
    print(f"copy bandwidth {bw / 1e9:.2f} GB/s")
    mlp = model.h[0].mlp
    for kind in ("int4", "fp32"):
        blob = int4.mlp_model(mlp, kind == "int4", 32)
        n_w = mlp.c_fc.weight.numel() + mlp.c_proj.weight.numel()
        nbytes = n_w * (5 / 8 if kind == "int4" else 4)
        sess = int4.session(blob)
        xx = torch.randn(1, 192).numpy()
        ms = count.timing(count.time_calls(lambda: sess.run(None, {"x": xx}), 200, 20), 1)["median_ms"]
        print(f"GPT MLP {kind}: file {len(blob) / 1e3:.0f} kB, weights {nbytes / 1e3:.0f} kB, one token {ms:.4f} ms, "
              f"roofline {nbytes / bw * 1e3:.4f} ms")


if __name__ == "__main__":
    main()
