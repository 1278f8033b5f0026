"""labkit.deploy.int8_text: the ONNX export computes what PyTorch does, ONNX Runtime's dynamic int8
runs MatMulInteger and matches its formula on one Linear, torchao's int8 stays close to fp32."""
import numpy as np
import pytest
import torch
from torch import nn

from labkit import minilm
from labkit.deploy import int8_text


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer (its vocabulary), as a MiniLM."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = minilm.model_dir()
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64,
                     attn_implementation="eager")
    model = minilm.MiniLM(BertModel(cfg, add_pooling_layer=False).eval(), tok).eval()
    path = tmp_path_factory.mktemp("int8") / "tiny.onnx"
    p32 = int8_text.onnx(model, path)
    p8 = int8_text.quantize(p32, path.with_name("tiny.int8.onnx"))
    return model, p32, p8


S = ["A man is playing a guitar.", "A man plays the guitar.", "The stock market fell sharply.", "Cats sleep."]


def test_onnx_export_equals_pytorch_and_int8_runs_integer_matmuls(tiny):
    model, p32, p8 = tiny
    ref = model.encode(S)
    got = int8_text.encoder(p32, model.tokenizer).encode(S)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    ops = int8_text.ops(p8)
    assert ops.get("MatMulInteger") == 12 and "MatMulInteger" not in int8_text.ops(p32)   # 6 Linears × 2 layers
    e8 = int8_text.encoder(p8, model.tokenizer).encode(S)
    cos = torch.nn.functional.cosine_similarity(e8, ref, dim=1)
    assert (cos > 0.99).all() and not torch.equal(e8, ref), cos


def test_dynamic_int8_matches_its_formula_on_one_linear(tmp_path):
    """quantize_dynamic: x uint8 per tensor (s = (max(x, 0) − min(x, 0)) / 255, z = round(−min / s)),
    W int8 symmetric per output channel (s_w = max|W_i| / 127): Y = s_x s_w (x_q − z) W_qᵀ (+ b)."""
    import onnx
    from onnx import helper, numpy_helper

    g = np.random.default_rng(0)
    W = g.standard_normal((16, 6)).astype(np.float32)        # (in, out) as ONNX MatMul's B
    x = (g.standard_normal((5, 16)) * 3).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [5, 16])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [5, 6])],
                              initializer=[numpy_helper.from_array(W, "W")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "one.onnx")
    p8 = int8_text.quantize(tmp_path / "one.onnx", tmp_path / "one.int8.onnx", kernels="U8S8")
    y = int8_text.session(p8).run(None, {"x": x})[0]
    lo, hi = min(x.min(), 0), max(x.max(), 0)
    s_x = (hi - lo) / 255
    z = np.clip(np.round(-lo / s_x), 0, 255)
    x_q = np.clip(np.round(x / s_x) + z, 0, 255)
    s_w = np.abs(W).max(0) / 127
    W_q = np.clip(np.round(W / s_w), -127, 127)
    want = s_x * s_w * ((x_q - z) @ W_q)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-4)
    assert np.abs(y - x @ W).max() > 1e-3                    # it is quantized
    # U8U8: uint8 weights (exact on every CPU), close to the same product; None picks by the CPU rule
    p_uu = int8_text.quantize(tmp_path / "one.onnx", tmp_path / "one.u8u8.onnx", kernels="U8U8")
    w_types = {t.data_type for t in onnx.load(p_uu).graph.initializer if t.name.startswith("W")}
    assert onnx.TensorProto.UINT8 in w_types and onnx.TensorProto.INT8 not in w_types
    np.testing.assert_allclose(int8_text.session(p_uu).run(None, {"x": x})[0], x @ W, atol=0.2)
    from labkit.deploy import mobile
    auto = int8_text.quantize(tmp_path / "one.onnx", tmp_path / "one.auto.onnx")
    auto_types = {t.data_type for t in onnx.load(auto).graph.initializer if t.name.startswith("W")}
    want_kernels = mobile.int8_kernels(*mobile.cpu_features())[0]
    assert (onnx.TensorProto.INT8 in auto_types) == (want_kernels == "U8S8")
    with pytest.raises(ValueError, match="The 'kernels' parameter of quantize must be one of"):
        int8_text.quantize(tmp_path / "one.onnx", tmp_path / "bad.onnx", kernels="S8S8")


def test_torchao_int8_is_close_to_fp32_and_leaves_the_model_alone(tiny):
    model, _, _ = tiny
    q = int8_text.torchao_int8(model)
    cos = torch.nn.functional.cosine_similarity(q.encode(S), model.encode(S), dim=1)
    assert (cos > 0.99).all(), cos
    assert type(model.bert.encoder.layer[0].attention.self.query.weight) is nn.Parameter
    assert type(q.bert.encoder.layer[0].attention.self.query.weight) is not nn.Parameter


def test_throughput_and_flags(tiny):
    model, _, _ = tiny
    assert set(int8_text.cpu_flags()) == {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"}
    assert int8_text.throughput(model, S, 2, 1) > 0


def test_bad_input():
    with pytest.raises(TypeError, match="The 'model' parameter of onnx must be a minilm.MiniLM"):
        int8_text.onnx(nn.Linear(2, 2), "x.onnx")
    with pytest.raises(ValueError, match="The 'path' parameter of quantize must be an existing .onnx file"):
        int8_text.quantize("missing.onnx", "out.onnx")
    with pytest.raises(ValueError, match="The 'batch_size' parameter of throughput"):
        int8_text.throughput(minilm.MiniLM(nn.Identity(), None), S, 0)
