"""A real int8 runtime for the sentence encoder: dynamic int8 with int8 × int8 → int32 GEMMs.

W8A8 in labkit.w8a8 is fake quantization (float GEMMs on rounded values). Here the products run
on integer kernels, two ways, for MiniLM (`labkit.minilm`, every BERT Linear int8):

* ONNX Runtime (`onnx(model, path)` then `quantize(path, path_int8)`): the TorchScript ONNX export of the BERT, then
  `onnxruntime.quantization.quantize_dynamic` (what sentence-transformers' `export_dynamic_quantized_onnx_model`
  calls): weights int8 per output channel, activations uint8, quantized per tensor at run time,

      x_q = round(x / s_x) + z_x,  s_x = (max x − min x) / 255     Y = s_x s_w (x_q − z_x) W_qᵀ

  run by MatMulInteger / DynamicQuantizeMatMul (MLAS: AVX-512 VNNI `vpdpbusd` where the CPU has it,
  else AVX2 `vpmaddubsw`, whose int16 pair sums ONNX Runtime avoids saturating by using 7-bit weights
  only with `reduce_range`);
* torchao (`torchao_int8(model)`): `Int8DynamicActivationInt8WeightConfig` — int8 per-token symmetric
  activations × int8 per-channel weights through `torch._int_mm` (oneDNN on x86).

`encoder(...)` wraps either as `.encode(sentences)` (mean pooling, L2 norm, as `minilm.MiniLM`) so
`minilm.spearman` scores it; `throughput` counts sentences per second at a batch size; `cpu_flags`
says which dot-product instructions this CPU has.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from torch import nn

from ..minilm import MiniLM, mean_pool
from ..prune import clone
from ..validate import check_choice, check_int, check_module, message

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def cpu_flags() -> dict[str, bool]:
    """{flag: present} for the x86 instructions an int8 GEMM uses (from /proc/cpuinfo; all False
    where that file is missing)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split())
    except (OSError, IndexError):
        flags = set()
    return {f: f in flags for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")}


def _minilm(model, func: str) -> MiniLM:
    if not isinstance(model, MiniLM):
        raise TypeError(message("model", func, "a minilm.MiniLM (minilm.load())", type(model).__name__))
    return model


class _Bert(nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids).last_hidden_state


def onnx(model: MiniLM, path) -> Path:
    """Write MiniLM's BERT as fp32 ONNX (inputs input_ids, attention_mask, token_type_ids (N, L)
    int64 → hidden (N, L, 384), N and L dynamic) to `path` (TorchScript exporter, opset 17)."""
    model = _minilm(model, "onnx")
    path = _onnx_path(path, "onnx")
    ex = model.tokenize(["an example sentence to trace", "and another"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Bert(clone(model.bert)).eval(), tuple(ex[k] for k in INPUTS), str(path),
                          input_names=list(INPUTS), output_names=["hidden"], dynamo=False, opset_version=17,
                          dynamic_axes={k: {0: "N", 1: "L"} for k in INPUTS} | {"hidden": {0: "N", 1: "L"}})
    return path


def quantize(fp32_path, path, kernels: str | None = None) -> Path:
    """ONNX Runtime's dynamic int8 of the fp32 file: MatMul weights per output channel, activations
    uint8 per tensor computed at run time (MatMulInteger). Returns `path`.

    kernels: "U8S8" (int8 weights: fast and exact with VNNI or on ARM, saturating VPMADDUBSW on
    other x86) or "U8U8" (uint8 weights: exact everywhere); None picks by `mobile.int8_kernels`
    for this CPU, as `mobile.export` does."""
    fp32_path = _onnx_path(fp32_path, "quantize", exists=True)
    path = _onnx_path(path, "quantize")
    from .mobile import cpu_features, int8_kernels

    if kernels is None:
        kernels = int8_kernels(*cpu_features())[0]
    check_choice(kernels, "kernels", "quantize", ("U8S8", "U8U8"))
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(str(fp32_path), str(path), per_channel=True,
                         weight_type=QuantType.QInt8 if kernels == "U8S8" else QuantType.QUInt8)
    finally:
        logging.disable(logging.NOTSET)
    return path


def _onnx_path(path, func: str, exists: bool = False) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(message("path", func, "a str or os.PathLike", type(path).__name__))
    if not str(path).endswith(".onnx") or (exists and not Path(path).is_file()):
        raise ValueError(message("path", func, "an existing .onnx file" if exists else "a file name ending in .onnx",
                                 str(path)))
    return Path(path)


def session(path, threads: int = 1):
    """An onnxruntime.InferenceSession of the .onnx file on the CPU, `threads` intra-op threads."""
    import onnxruntime as ort

    threads = check_int(threads, "threads", "session", low=1, high=256)
    path = _onnx_path(path, "session", exists=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ops(path) -> dict[str, int]:
    """{ONNX op type: count} of the graph in `path` (which kernels an int8 program runs)."""
    import onnx as onnx_

    counts: dict[str, int] = {}
    for node in onnx_.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def torchao_int8(model: MiniLM) -> MiniLM:
    """A copy of MiniLM whose BERT Linears are torchao int8 dynamic (per-token int8 activations ×
    per-channel int8 weights, torch._int_mm)."""
    model = _minilm(model, "torchao_int8")
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    q = clone(model)
    quantize_(q.bert, Int8DynamicActivationInt8WeightConfig())
    return q.eval()


class Encoder(nn.Module):
    """`.encode(sentences)` of an ONNX Runtime session of `onnx(...)`, with MiniLM's tokenizer:
    mean pooling over real tokens, L2-normalized, as minilm.MiniLM.encode."""

    def __init__(self, sess, tokenizer):
        super().__init__()
        self.sess, self.tokenizer = sess, tokenizer
        self.names = [i.name for i in sess.get_inputs()]

    def tokenize(self, sentences):
        return MiniLM.tokenize(self, sentences)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        feed = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        h = self.sess.run(None, {k: feed[k].numpy() for k in self.names})[0]
        return mean_pool(torch.from_numpy(h), attention_mask)

    @torch.no_grad()
    def encode(self, sentences, batch_size: int = 64) -> torch.Tensor:
        """A list of str → float32 (N, 384) unit rows, batched by length as MiniLM.encode."""
        if isinstance(sentences, str):
            sentences = [sentences]
        if not isinstance(sentences, (list, tuple)) or not sentences or not all(isinstance(s, str) for s in sentences):
            raise TypeError(message("sentences", "Encoder.encode", "a non-empty list of str", type(sentences).__name__))
        batch_size = check_int(batch_size, "batch_size", "Encoder.encode", low=1)
        order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
        out = None
        for i in range(0, len(order), batch_size):
            idx = order[i: i + batch_size]
            e = self(**self.tokenize([sentences[j] for j in idx]))
            out = torch.empty(len(sentences), e.shape[1]) if out is None else out
            out[idx] = e.float()
        return out


def encoder(path, tokenizer, threads: int = 1) -> Encoder:
    """An Encoder of the .onnx file (from `onnx` or `quantize`) with MiniLM's tokenizer."""
    return Encoder(session(path, threads), tokenizer)


def throughput(model: nn.Module, sentences, batch_size: int, repeats: int = 3) -> float:
    """Sentences per second of model.encode over `sentences` in batches of `batch_size` (best of
    `repeats` passes, tokenization included). Machine- and load-dependent."""
    check_module(model, "model", "throughput")
    if not hasattr(model, "encode"):
        raise TypeError(message("model", "throughput", "a model with .encode (MiniLM or Encoder)",
                                type(model).__name__))
    batch_size = check_int(batch_size, "batch_size", "throughput", low=1)
    repeats = check_int(repeats, "repeats", "throughput", low=1)
    if not isinstance(sentences, (list, tuple)) or not sentences:
        raise ValueError(message("sentences", "throughput", "a non-empty list of str", sentences))
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            model.encode(list(sentences), batch_size=batch_size)
            best = min(best, time.perf_counter() - t)
    return len(sentences) / best
