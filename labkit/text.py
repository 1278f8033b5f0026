"""Characters as tokens, for the character-level GPT (`labkit.gpt`), and its calibration data.

The vocabulary is the 83 characters of the shipped Shakespeare text (`data.shakespeare()`, all
three splits), sorted: character `CHARS[i]` has id i. A character-level model needs no tokenizer
to be trained; its loss per token is a loss per character, so perplexities compare across models.

    encode("To be") → tensor([45, 69, 1, 56, 59])      decode(encode(s)) == s

`calibration(ids, n, T, seed)` is the calibration set of post-training quantization and pruning
(GPTQ, AWQ, SmoothQuant, Wanda, SparseGPT all use one): n windows of T consecutive ids, drawn
uniformly at random (seeded) from a training text, never from the held-out plays.
"""
from __future__ import annotations

import torch

from .validate import accepts, check_int, check_tensor, message

CHARS = "\n !\"&'(),-./0123456789:;?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz{}"
STOI = {c: i for i, c in enumerate(CHARS)}


@accepts(str="any text made of the characters of CHARS is encoded ('x' is one)")
def encode(s: str) -> torch.Tensor:
    """A str → its ids, a 1-D int64 tensor; a character outside CHARS is a ValueError."""
    if not isinstance(s, str):
        raise TypeError(message("s", "encode", "a str", type(s).__name__))
    unknown = sorted(set(s) - STOI.keys())
    if unknown:
        raise ValueError(message("s", "encode", f"a str of the {len(CHARS)} characters of text.CHARS",
                                 f"a str with {''.join(unknown[:10])!r}"))
    return torch.tensor([STOI[c] for c in s], dtype=torch.int64)


@accepts(list="the empty list of ids decodes to the empty str")
def decode(ids) -> str:
    """Ids (a 1-D int tensor or a list of ints in [0, 83)) → the str."""
    if isinstance(ids, torch.Tensor):
        ids = check_tensor(ids, "ids", "decode", floating=False)
        if ids.ndim != 1 or ids.is_floating_point() or ids.is_complex():
            raise ValueError(message("ids", "decode", "a 1-D integer tensor", f"{ids.dtype} of shape {tuple(ids.shape)}"))
        ids = ids.tolist()
    if not isinstance(ids, (list, tuple)):
        raise TypeError(message("ids", "decode", "a 1-D int tensor or a list of ints", type(ids).__name__))
    for i in ids:
        check_int(i, "ids", "decode", low=0, high=len(CHARS) - 1)
    return "".join(CHARS[i] for i in ids)


def calibration(ids: torch.Tensor, n: int, T: int, seed: int = 0) -> torch.Tensor:
    """n windows of T consecutive ids from the 1-D id tensor `ids`, at start positions drawn
    uniformly (with replacement) by a generator seeded with `seed` → (n, T) int64.
    The same (ids, n, T, seed) give the same windows on every machine."""
    ids = check_tensor(ids, "ids", "calibration", floating=False)
    if ids.ndim != 1 or ids.dtype != torch.int64:
        raise ValueError(message("ids", "calibration", "a 1-D int64 tensor",
                                 f"{ids.dtype} of shape {tuple(ids.shape)}"))
    n = check_int(n, "n", "calibration", low=1, high=1_000_000)
    T = check_int(T, "T", "calibration", low=1)
    seed = check_int(seed, "seed", "calibration", low=0)
    if len(ids) < T:
        raise ValueError(message("T", "calibration", f"at most len(ids) = {len(ids)}", T))
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - T + 1, (n,), generator=g)
    return ids[starts[:, None] + torch.arange(T)]
