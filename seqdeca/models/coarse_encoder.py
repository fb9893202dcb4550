"""The per-frame coarse encoder (legacy DECA ``E_flame``), also the body of the detail encoder.

Structure (docs/design.md, "DECA and OpenGraphAU compatibility"), kept so that DECA's
``deca_model.tar`` imports by identity:

* ``encoder``: a ResNet-50 trunk without ``fc`` (timm, torchvision key names ``conv1``, ``bn1``,
  ``layer1`` ... ``layer4``), followed by a FIXED 7x7 average pool -- which is why the input must
  be exactly 224x224 (the layer4 map is then 7x7 and the pool is a global mean);
* ``layers = Sequential(Linear(2048, 1024), ReLU, Linear(1024, n_codes))``.

State-dict keys are therefore ``encoder.*``, ``layers.0.*`` and ``layers.2.*``, the same as DECA's.

Input convention (DECA's): RGB in [0, 1], face crop 224x224, NO ImageNet normalisation.

The ``"tiny"`` backbone exists only so that tests and smoke runs stay fast; it has no pretrained
counterpart. Its trunk (five stride-2 convolutions, 128 channels, any input size >= 8) is pooled
to a 4 x 4 grid and flattened to the same 2048 numbers, NOT averaged globally: a shallow trunk's
features are nearly translation-equivariant (receptive field 63 px), so a global mean would keep
almost nothing of where the face is and how large it is, which the camera and pose codes need
(ResNet-50's deep receptive field recovers position from its padding; the tiny trunk cannot).

The ``"resnet18"`` backbone (timm's ResNet-18, 512 channels, any input size >= 32) is the real
architecture that CPU-sized experiments use at small crops: its map is pooled to a 2 x 2 grid,
2048 numbers again (at 64 px input that is the layer4 map itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from seqdeca.models.trunk import BACKBONES, build_trunk

FEATURE_DIM = 2048  # ResNet-50 layer4 channels: the global feature size
HIDDEN_DIM = 1024  # width of the head's hidden layer
INPUT_SIZE = 224  # the only input size the ResNet-50 backbone accepts (fixed 7x7 pool)
POOL_SIZE = 7  # layer4 map side at 224 input (stride 32)
TINY_GRID = 4  # the tiny trunk's map is pooled to TINY_GRID x TINY_GRID cells ...
TINY_CHANNELS = FEATURE_DIM // TINY_GRID**2  # ... of 128 channels: 2048 features
RESNET18_GRID = 2  # ResNet-18's 512-channel map pooled to 2 x 2 cells: 2048 features


@dataclass(frozen=True)
class EncoderOutput:
    """What an encoder returns for N images.

    Attributes:
        features: ``(N, 2048)`` global image feature (the pooled trunk output).
        codes: ``(N, n_codes)`` the head's output (raw, no activation).
    """

    features: torch.Tensor
    codes: torch.Tensor


class CoarseEncoder(nn.Module):
    """Image to flat code vector through a ResNet-50 global feature (legacy ``E_flame``).

    Split the codes with :class:`seqdeca.models.code_layout.CodeLayout` (236 for DECA).

    Args:
        n_codes: length of the output code vector (``CodeLayout.total``).
        backbone: ``"resnet50"`` (DECA-compatible, input exactly 224x224), ``"resnet18"`` (small
            crops, CPU experiments) or ``"tiny"`` (tests).
    """

    def __init__(self, n_codes: int, *, backbone: str = "resnet50") -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of {BACKBONES}")
        if n_codes <= 0:
            raise ValueError(f"n_codes must be positive, got {n_codes}")
        self.n_codes = n_codes
        self.backbone = backbone
        self.encoder = build_trunk(backbone, tiny_features=TINY_CHANNELS)
        self.layers = nn.Sequential(
            nn.Linear(FEATURE_DIM, HIDDEN_DIM), nn.ReLU(), nn.Linear(HIDDEN_DIM, n_codes)
        )

    def start_at(self, prior: torch.Tensor) -> None:
        """Make the untrained head predict ``prior`` for every image.

        The last linear layer's weight is zeroed and its bias set to ``prior`` (as the temporal
        fusion's residual head starts at zero): training then starts from a sensible face
        framing and light instead of random codes (a random head's camera puts the face off
        the crop and its light renders black, so landmark and photometric gradients are
        useless). The trunk and hidden layer keep their random initialisation; the zero layer
        receives gradients from the first step. Loading weights (a DECA ``E_flame``, a seqdeca
        checkpoint) replaces both tensors, so imports stay exact.

        Args:
            prior: (n_codes,) the codes to start at (:meth:`CodeLayout.prior`).
        """
        last = self.layers[2]
        if tuple(prior.shape) != (self.n_codes,):
            raise ValueError(f"prior has shape {tuple(prior.shape)}, expected ({self.n_codes},)")
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(prior.to(last.bias))

    def _check_images(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W), got {tuple(images.shape)}")
        side = tuple(images.shape[-2:])
        if self.backbone == "resnet50" and side != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(
                f"the ResNet-50 encoder needs {INPUT_SIZE}x{INPUT_SIZE} crops (fixed "
                f"{POOL_SIZE}x{POOL_SIZE} pool, as in DECA), got {side[0]}x{side[1]}"
            )
        if min(side) < (32 if self.backbone == "resnet18" else 8):
            raise ValueError(f"images too small for the encoder: {side[0]}x{side[1]}")

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Global image feature.

        Args:
            images: ``(N, 3, 224, 224)`` RGB in [0, 1], not normalised (any side >= 8 for the tiny
                backbone).

        Returns:
            ``(N, 2048)``.
        """
        self._check_images(images)
        fmap = self.encoder.forward_features(images)  # (N, 2048, 7, 7) for ResNet-50 at 224
        if self.backbone == "resnet50":
            return F.avg_pool2d(fmap, POOL_SIZE, stride=1).flatten(1)
        if self.backbone == "resnet18":
            return F.adaptive_avg_pool2d(fmap, RESNET18_GRID).flatten(1)  # (N, 512 * 2 * 2)
        return F.adaptive_avg_pool2d(fmap, TINY_GRID).flatten(1)  # (N, 128 * 4 * 4)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, 2048)`` features to ``(N, n_codes)`` raw codes."""
        return self.layers(features)

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        """``(N, 3, 224, 224)`` RGB [0, 1] to :class:`EncoderOutput` (features and codes)."""
        features = self.forward_features(images)
        return EncoderOutput(features=features, codes=self.forward_head(features))
