"""A small character-level GPT, written the way nanoGPT writes it (Karpathy 2022,
https://github.com/karpathy/nanoGPT; the architecture of GPT-2, Radford et al. 2019).

    x₀ = wte[idx] + wpe[0..T)                       (B, T, C)
    x  ← x + Attn(LN₁(x))      Attn: softmax(QKᵀ/√d + causal mask) V, heads of d = C / n_head
    x  ← x + MLP(LN₂(x))       MLP: W₂ GELU(W₁ x), hidden 4C
    logits = LN_f(x) wteᵀ                           (B, T, V)   the head is tied to the embedding

Every matrix product of the blocks is an `nn.Linear` (attn.c_attn C→3C, attn.c_proj C→C,
mlp.c_fc C→4C, mlp.c_proj 4C→C), so GPTQ, AWQ, SmoothQuant, Wanda and SparseGPT hook and
replace them; `lm_head` shares its weight with `wte` (quantizers usually leave it alone).
Attention is `torch.nn.functional.scaled_dot_product_attention(..., is_causal=True)`.

`evaluate(model, ids)` is the perplexity evaluator: the mean cross-entropy per character over
fixed, non-overlapping windows of the held-out text (deterministic), and exp of it:

    loss = −(1/N) Σₜ log p(xₜ | x<ₜ)   (nats per character),   perplexity = e^loss

`save` / `load` keep a model as safetensors with its config, vocabulary and training recipe in
the file's metadata; `models.gpt(pretrained=True)` loads the shipped checkpoint (sha256 checked).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .validate import check_bool, check_int, check_module, check_path, check_tensor, message


@dataclass
class GPTConfig:
    vocab_size: int = 83
    block_size: int = 128      # the longest context T
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 192          # C
    dropout: float = 0.0


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)    # Q, K, V in one product
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)                 # each (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))  # (B, n_head, T, d) → (B, T, C)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))      # pre-LN: normalize, transform, add to the residual
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight                   # tied head
        self.apply(self._init)
        for name, p in self.named_parameters():                 # GPT-2: residual projections scaled
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx: (B, T) int64 character ids, T ≤ block_size → logits (B, T, vocab_size)."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(message("idx", "GPT.forward", f"at most block_size = {self.config.block_size} "
                                     "tokens long", f"shape {tuple(idx.shape)}"))
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T, device=idx.device)))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    def num_parameters(self) -> int:
        """Parameters counted once (the tied head is the embedding)."""
        return sum(p.numel() for p in self.parameters())


def build(vocab_size: int = 83, block_size: int = 128, n_layer: int = 4, n_head: int = 4,
          n_embd: int = 192, seed: int | None = 0) -> GPT:
    """An untrained GPT (weights N(0, 0.02), residual projections N(0, 0.02/√(2·n_layer)))."""
    from ._rng import seeded

    vocab_size = check_int(vocab_size, "vocab_size", "build", low=1)
    block_size = check_int(block_size, "block_size", "build", low=1)
    n_layer = check_int(n_layer, "n_layer", "build", low=1)
    n_head = check_int(n_head, "n_head", "build", low=1)
    n_embd = check_int(n_embd, "n_embd", "build", low=1)
    if n_embd % n_head:
        raise ValueError(message("n_embd", "build", f"a multiple of n_head = {n_head}", n_embd))
    with seeded(seed, "build"):
        return GPT(GPTConfig(vocab_size, block_size, n_layer, n_head, n_embd))


def save(model: GPT, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write the weights as safetensors (the tied head once) with the config and `metadata`
    (JSON-able values, e.g. vocabulary and training recipe) in the file's header."""
    from safetensors.torch import save_file

    if not isinstance(model, GPT):
        raise TypeError(message("model", "save", "a labkit.gpt.GPT", type(model).__name__))
    path = check_path(path, "path", "save", exists=False)
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(message("metadata", "save", "a dict or None", type(metadata).__name__))
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    header = {"config": json.dumps(asdict(model.config))}
    header.update({k: json.dumps(v) for k, v in (metadata or {}).items()})
    save_file(tensors, str(path), metadata=header)


def load(path: str | os.PathLike, sha256: str | None = None) -> GPT:
    """A GPT from a file written by `save`; with `sha256`, the file is checked first (a mismatch
    is a ValueError naming both sums). `model.metadata` holds the header's other entries."""
    from safetensors import safe_open

    from .data import verify

    path = check_path(path, "path", "load")
    if sha256 is not None:
        verify(path, sha256)
    with safe_open(str(path), "pt") as f:
        header = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if "config" not in header:
        raise ValueError(message("path", "load", "a safetensors file written by labkit.gpt.save", str(path)))
    cfg = header.pop("config")
    model = GPT(GPTConfig(**cfg))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing != ["lm_head.weight"] or unexpected:
        raise ValueError(f"{path}: weights do not fit the config {cfg}: missing {missing}, unexpected {unexpected}")
    model.metadata = header
    return model.eval()


CHECKPOINT = ("gpt_shakespeare.safetensors",        # in data/; made by tools/train_gpt.py
              "25a9efda685e8697719b121d12df0b37449562ab7bcdb598fac63c8c9cadf8c3")


def pretrained() -> GPT:
    """The shipped GPT trained on Shakespeare's plays (data/README.md), sha256-checked, in eval mode."""
    from .data import data_dir

    return load(data_dir() / CHECKPOINT[0], sha256=CHECKPOINT[1])


def windows(ids: torch.Tensor, T: int, max_tokens: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed, non-overlapping evaluation windows of a 1-D id tensor: inputs x = ids[i·T : (i+1)·T]
    and targets y = ids[i·T+1 : (i+1)·T+1], both (n, T); n = ⌊(len − 1) / T⌋, or fewer so that
    n·T ≤ max_tokens (the first windows; a deterministic subset)."""
    ids = check_tensor(ids, "ids", "windows", floating=False)
    T = check_int(T, "T", "windows", low=1)
    if ids.ndim != 1 or ids.dtype != torch.int64:
        raise ValueError(message("ids", "windows", "a 1-D int64 tensor", f"{ids.dtype} of shape {tuple(ids.shape)}"))
    n = (len(ids) - 1) // T
    if max_tokens is not None:
        n = min(n, check_int(max_tokens, "max_tokens", "windows", low=T) // T)
    if n < 1:
        raise ValueError(message("ids", "windows", f"longer than T + 1 = {T + 1} tokens", len(ids)))
    x = ids[: n * T].view(n, T)
    y = ids[1: n * T + 1].view(n, T)
    return x, y


@torch.no_grad()
def evaluate(model: nn.Module, ids: torch.Tensor, T: int | None = None, max_tokens: int | None = None,
             batch_size: int = 32) -> dict:
    """Test loss (nats per character) and perplexity per character of `model` on the 1-D id
    tensor `ids` (e.g. `text.encode(data.shakespeare().test)`), over fixed windows of T tokens
    (default: the model's block_size; each window starts with an empty context). `max_tokens`
    evaluates the first windows only, for fast cells. The model's mode is restored.

    → {"loss": float, "perplexity": float, "bits_per_char": float, "tokens": int,
       "se": the standard error of the loss, std of the window means / √windows (windows are not
       independent samples of one text, so read it as a rough scale of the evaluation noise)}
    """
    model = check_module(model, "model", "evaluate")
    if T is None:
        T = getattr(getattr(model, "config", None), "block_size", None)
        if T is None:
            raise ValueError(message("T", "evaluate", "an int (the model has no config.block_size)", T))
    x, y = windows(ids, T, max_tokens)
    batch_size = check_int(batch_size, "batch_size", "evaluate", low=1)
    was_training = model.training
    model.eval()
    try:
        per_window = []                                             # mean loss of each window
        for i in range(0, len(x), batch_size):
            logits = model(x[i: i + batch_size]).double()           # (b, T, V)
            nll = F.cross_entropy(logits.transpose(1, 2), y[i: i + batch_size], reduction="none")   # (b, T)
            per_window.append(nll.mean(1))
    finally:
        model.train(was_training)
    w = torch.cat(per_window)
    loss = w.mean().item()
    se = (w.std() / math.sqrt(len(w))).item() if len(w) > 1 else float("nan")
    return {"loss": loss, "perplexity": math.exp(loss), "bits_per_char": loss / math.log(2),
            "tokens": y.numel(), "se": se}


@torch.no_grad()
def generate(model: GPT, prompt: torch.Tensor, n: int, temperature: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Sample `n` more ids after the 1-D id tensor `prompt` (seeded; temperature > 0) → 1-D ids."""
    from .validate import check_float

    if not isinstance(model, GPT):
        raise TypeError(message("model", "generate", "a labkit.gpt.GPT", type(model).__name__))
    prompt = check_tensor(prompt, "prompt", "generate", floating=False)
    if prompt.ndim != 1 or len(prompt) < 1 or prompt.dtype != torch.int64:
        raise ValueError(message("prompt", "generate", "a non-empty 1-D int64 tensor", f"shape {tuple(prompt.shape)}"))
    n = check_int(n, "n", "generate", low=0, high=100_000)
    temperature = check_float(temperature, "temperature", "generate", low=0, closed="right")
    g = torch.Generator().manual_seed(check_int(seed, "seed", "generate", low=0))
    was_training = model.training
    model.eval()
    ids = prompt.clone()
    try:
        for _ in range(n):
            logits = model(ids[-model.config.block_size:][None])[0, -1] / temperature
            ids = torch.cat([ids, torch.multinomial(F.softmax(logits, -1), 1, generator=g)])
    finally:
        model.train(was_training)
    return ids
