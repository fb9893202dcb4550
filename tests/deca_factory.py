"""Reference DECA networks with DECA's original structure and key names, and a writer of
``deca_model.tar``-format checkpoints built from them.

These modules are written independently of ``seqdeca.models`` (torchvision trunk instead of timm,
DECA's forward written out step by step) so that an import test compares two implementations.
Their state-dict keys follow DECA's released checkpoint (docs/design.md, "DECA and OpenGraphAU
compatibility"):

* encoders: ``encoder.conv1.weight``, ``encoder.bn1.*``, ``encoder.layer1.0.conv1.weight`` ...,
  no ``encoder.fc``; head ``layers.0.*`` (Linear 2048->1024) and ``layers.2.*`` (Linear 1024->out);
* generator: ``l1.0.*`` and ``conv_blocks.{0,2,3,6,7,10,11,14,15,18,19,21}.*``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.nn import functional as F


class RefResnetEncoder(nn.Module):
    """DECA's ResnetEncoder: ResNet-50 trunk, 7x7 average pool, Linear-ReLU-Linear head."""

    def __init__(self, outsize: int) -> None:
        super().__init__()
        trunk = torchvision.models.resnet50(weights=None)
        del trunk.fc  # DECA's trunk has no classifier, so no encoder.fc.* keys
        del trunk.avgpool  # DECA pools with a fixed 7x7 window instead (no parameters)
        self.encoder = trunk
        self.layers = nn.Sequential(nn.Linear(2048, 1024), nn.ReLU(), nn.Linear(1024, outsize))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        t = self.encoder
        x = t.maxpool(t.relu(t.bn1(t.conv1(images))))
        x = t.layer4(t.layer3(t.layer2(t.layer1(x))))  # (N, 2048, 7, 7) at 224
        x = F.avg_pool2d(x, kernel_size=7, stride=1).view(x.shape[0], -1)
        return self.layers(x)


class RefGenerator(nn.Module):
    """DECA's detail generator: Linear to 128x8x8 then five upsampling conv blocks to 256."""

    def __init__(self, latent_dim: int = 181) -> None:
        super().__init__()
        self.l1 = nn.Sequential(nn.Linear(latent_dim, 128 * 64))
        widths = [128, 128, 64, 64, 32, 16]
        blocks: list[nn.Module] = [nn.BatchNorm2d(128)]
        for c_in, c_out in itertools.pairwise(widths):
            blocks.append(nn.Upsample(scale_factor=2, mode="bilinear"))
            blocks.append(nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1))
            blocks.append(nn.BatchNorm2d(c_out, 0.8))
            blocks.append(nn.LeakyReLU(0.2, inplace=True))
        blocks.append(nn.Conv2d(16, 1, kernel_size=3, stride=1, padding=1))
        blocks.append(nn.Tanh())
        self.conv_blocks = nn.Sequential(*blocks)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.l1(latent).view(latent.shape[0], 128, 8, 8)
        return self.conv_blocks(x) * 0.01


def randomize_norm_stats(module: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial running statistics and affine values (eval-mode tests)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m.num_batches_tracked.fill_(1000)


def write_deca_checkpoint(
    path: Path,
    *,
    e_flame: nn.Module | None = None,
    e_detail: nn.Module | None = None,
    d_detail: nn.Module | None = None,
    prefix: str = "",
) -> Path:
    """``torch.save`` a dict ``{'E_flame', 'E_detail', 'D_detail'}`` of the given modules' states.

    Args:
        path: destination file.
        e_flame, e_detail, d_detail: reference modules (a part is omitted when None).
        prefix: prepended to every key (e.g. ``"module."`` as DataParallel saves).
    """
    parts = {"E_flame": e_flame, "E_detail": e_detail, "D_detail": d_detail}
    data = {
        name: {prefix + k: v for k, v in module.state_dict().items()}
        for name, module in parts.items()
        if module is not None
    }
    torch.save(data, path)
    return path
