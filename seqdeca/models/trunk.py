"""The convolutional trunks the encoders share: timm's ResNet-50, a ResNet-18 for CPU-sized
experiments, or a tiny one for tests.

All expose ``forward_features(images) -> (N, C, H/32, W/32)`` and ``num_features`` (C). The
ResNet-50 is created without weights (nothing is downloaded); its key names (``conv1``, ``bn1``,
``layer1.0.conv1``, ...) match torchvision's, so DECA and OpenGraphAU weights import by name.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

BACKBONES = ("resnet50", "resnet18", "tiny")


class TinyTrunk(nn.Module):
    """A cheap stride-32 conv trunk for tests: (N, 3, H, W) -> (N, num_features, H/32, W/32)."""

    def __init__(self, num_features: int = 64) -> None:
        super().__init__()
        self.num_features = num_features
        widths = (3, 8, 16, 32, 32, num_features)
        layers: list[nn.Module] = []
        for cin, cout in itertools.pairwise(widths):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)]
            layers += [nn.BatchNorm2d(cout), nn.ReLU()]
        self.body = nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def build_trunk(name: str, *, tiny_features: int = 64) -> nn.Module:
    """A trunk by name: "resnet50" (2048 channels), "resnet18" (512 channels; both timm, random
    init) or "tiny" (``tiny_features``)."""
    if name in ("resnet50", "resnet18"):
        import timm  # local import: keeps `import seqdeca.models...` light

        return timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
    if name == "tiny":
        return TinyTrunk(tiny_features)
    raise ValueError(f"backbone must be one of {BACKBONES}, got {name!r}")
