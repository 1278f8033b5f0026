"""Train labkit's character-level GPT on the shipped Shakespeare train split and write the checkpoint.

    nice -n 19 python tools/train_gpt.py --out data/gpt_shakespeare.safetensors   (the shipped one)

The recipe (every hyper-parameter below, the seed, the torch version, the time taken, the final val
and test loss) goes into the checkpoint's metadata; data/README.md repeats it with the file's sha256.
Batches are windows of T+1 characters at seeded random positions of the train text (text.calibration
with seed = RECIPE seed·10⁶ + step), so the run is the same sequence of batches on every machine.
AdamW (decoupled weight decay on the matrices only, as nanoGPT), linear warm-up then cosine decay.
`--max-minutes` stops early (recorded as steps_done < steps) if the machine is much slower than expected.
"""
import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from labkit import data, gpt, text  # noqa: E402

RECIPE = dict(block_size=128, n_layer=4, n_head=4, n_embd=192, dropout=0.0, batch_size=16, steps=800,
              lr=2e-3, min_lr=2e-4, warmup=50, weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0,
              seed=0, threads=1, eval_every=100, eval_tokens=16384)


def lr_at(step, r):
    if step < r["warmup"]:
        return r["lr"] * (step + 1) / r["warmup"]
    t = (step - r["warmup"]) / max(1, r["steps"] - r["warmup"])
    return r["min_lr"] + 0.5 * (r["lr"] - r["min_lr"]) * (1 + math.cos(math.pi * t))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="data/gpt_shakespeare.safetensors")
    ap.add_argument("--steps", type=int, default=RECIPE["steps"])
    ap.add_argument("--max-minutes", type=float, default=30.0)
    args = ap.parse_args()
    r = dict(RECIPE, steps=args.steps)
    torch.set_num_threads(r["threads"])
    split = data.shakespeare()
    train, val, test = (text.encode(s) for s in split)
    model = gpt.build(len(text.CHARS), r["block_size"], r["n_layer"], r["n_head"], r["n_embd"], seed=r["seed"])
    model.train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": r["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=r["lr"], betas=r["betas"])
    print(f"{model.num_parameters():,} parameters, recipe {json.dumps(r)}", flush=True)
    t0, history, step = time.time(), [], 0
    for step in range(r["steps"]):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, r)
        xy = text.calibration(train, r["batch_size"], r["block_size"] + 1, seed=r["seed"] * 10**6 + step)
        logits = model(xy[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), xy[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), r["grad_clip"])
        opt.step()
        if step % r["eval_every"] == 0 or step == r["steps"] - 1:
            v = gpt.evaluate(model, val, max_tokens=r["eval_tokens"])["loss"]
            model.train()
            history.append((step, round(loss.item(), 4), round(v, 4)))
            print(f"step {step} train {loss.item():.4f} val[{r['eval_tokens']}] {v:.4f} "
                  f"{time.time() - t0:.0f} s", flush=True)
        if time.time() - t0 > 60 * args.max_minutes:
            print(f"stopped at step {step}: over {args.max_minutes} min", flush=True)
            break
    seconds = time.time() - t0
    model.eval()
    ev = {name: gpt.evaluate(model, ids) for name, ids in (("val", val), ("test", test))}
    meta = {"recipe": r, "steps_done": step + 1, "train_seconds": round(seconds, 1),
            "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "parameters": model.num_parameters(), "vocab": text.CHARS, "history": history,
            "val": ev["val"], "test": ev["test"], "data_sha256": {k: v[1] for k, v in data.SHAKESPEARE.items()}}
    gpt.save(model, args.out, meta)
    print(json.dumps({k: meta[k] for k in ("steps_done", "train_seconds", "val", "test")}), flush=True)
    print("sha256", data.sha256(args.out))
    sample = gpt.generate(model, text.encode("ROMEO.\n"), 300, temperature=0.8, seed=0)
    print(text.decode(sample))


if __name__ == "__main__":
    main()
