"""labkit.deploy.int4: MatMulNBits' packed layout by hand, the kernel's output equal to labkit's
group-wise emulation, and the ≥ 6× smaller file."""
import pytest
import torch
from torch import nn

from labkit import quantize as Q
from labkit.deploy import int4

ort = pytest.importorskip("onnxruntime")


class MLP(nn.Module):
    def __init__(self, C=64, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.c_fc, self.gelu, self.c_proj = nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


def test_pack_layout_by_hand():
    W = torch.zeros(1, 16)
    W[0, 0], W[0, 1], W[0, 2] = 7.0, -7.0, 3.0          # s = 7 / 7 = 1: q = 7, −7, 3 → u = 15, 1, 11
    p = int4.pack(W, 16)
    assert p["B"].shape == (1, 1, 8) and p["B"].dtype == torch.uint8
    assert p["B"][0, 0, 0] == 15 | (1 << 4) and p["B"][0, 0, 1] == 11 | (8 << 4)   # low nibble first
    assert p["scales"].tolist() == [1.0] and torch.equal(p["W_hat"], W)


@pytest.mark.parametrize("g", [16, 32, 64])
def test_pack_equals_labkit_groupwise_restricted_and_unpacks(g):
    W = torch.randn(40, 128, generator=torch.Generator().manual_seed(g)) * 0.1
    p = int4.pack(W, g)
    assert torch.equal(p["W_hat"], Q.groupwise(W, 4, g, "restricted"))
    assert torch.equal(int4.unpack(p["B"], p["scales"]), p["W_hat"])


def test_kernel_output_equals_the_emulation_and_the_file_is_6x_smaller():
    mlp = MLP().eval()
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    emulated = MLP().eval()
    with torch.no_grad():
        for lin in (emulated.c_fc, emulated.c_proj):
            lin.weight.copy_(Q.groupwise(lin.weight, 4, 32, "restricted"))
        ref, ref32 = emulated(x), mlp(x)
    b4, b32 = int4.mlp_model(mlp, True, 32), int4.mlp_model(mlp, False)
    y4 = torch.from_numpy(int4.session(b4).run(None, {"x": x.numpy()})[0])
    y32 = torch.from_numpy(int4.session(b32).run(None, {"x": x.numpy()})[0])
    assert torch.allclose(y32, ref32, atol=1e-5)
    assert torch.allclose(y4, ref, atol=1e-5)                 # the kernel computes with labkit's Ŵ
    assert not torch.allclose(y4, ref32, atol=1e-3)           # and that is not the fp32 weight
    p = int4.pack(mlp.c_fc.weight, 32)
    assert 4 * mlp.c_fc.weight.numel() / (p["B"].numel() + 4 * p["scales"].numel()) == 6.4   # 32 / (4 + 32/32)
    assert len(b32) / len(b4) > 5.5                           # the file: biases stay fp32


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="The 'group_size' parameter of pack"):
        int4.pack(torch.ones(2, 48), 24)
    with pytest.raises(ValueError, match="The 'W' parameter of pack"):
        int4.pack(torch.ones(2, 48), 32)
    with pytest.raises(ValueError, match="The 'mlp' parameter of mlp_model"):
        int4.mlp_model(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="The 'model' parameter of session"):
        int4.session("x")
