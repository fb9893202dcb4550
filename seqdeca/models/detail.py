"""The detail stage networks: detail encoder (legacy ``E_detail``) and AU-conditioned detail
generator (legacy ``D_detail`` / ``Generator3``).

The generator keeps DECA's layout exactly (docs/design.md, "DECA and OpenGraphAU compatibility")
so that DECA's weights import by identity (keys ``l1.0.*`` and ``conv_blocks.<i>.*``):

* ``l1 = Sequential(Linear(latent_dim, 128 * 8 * 8))``, reshaped to ``(128, 8, 8)``;
* ``conv_blocks``: ``BatchNorm2d(128)``, then five blocks of [bilinear Upsample x2, Conv3x3,
  ``BatchNorm2d(C, 0.8)``, LeakyReLU 0.2] with C = 128, 64, 64, 32, 16 (8 -> 256), then Conv3x3
  to 1 channel and Tanh; the result is multiplied by ``max_displacement`` (DECA: 0.01).

The eps of 0.8 is DECA's quirk (the second positional argument of ``BatchNorm2d`` is eps, not
momentum); it is kept because DECA's weights were trained with it.

AU conditioning: after selected blocks a FiLM layer scales and shifts the activations per channel,
``h * (1 + gamma(au)) + beta(au)``, with ``gamma, beta`` from a small MLP of the AU vector whose
last layer starts at zero. With DECA's weights loaded and the FiLM layers untouched, the output is
exactly DECA's for ANY AU vector; training then learns how AUs modulate the wrinkles. The FiLM
parameters live under ``film.*`` and are the only keys a DECA checkpoint does not provide.

The other AU form, ``au_form="linear"``, makes the map LINEAR in the condition. Each AU k has a
map ``map_k = tanh(au_maps(features)_k + TEMPLATE_RATE x au_templates[k])``: a face-specific part
from the last block's features (``au_maps``, a Conv3x3 to K channels) plus a UV template shared
by every face (``au_templates``, (K, uv_size, uv_size)), both zero at init. The output is
``max_displacement x (base + sum_k au_k x map_k)``, where ``base`` is DECA's map. A face's
wrinkles are then maps whose depth follows their AUs (the form of the synthetic ground truth,
:mod:`seqdeca.data.synthetic_detail`); every frame of every face trains the templates, which a
deep generator's features would take far longer to draw. Its ``au_maps.*`` and
``au_templates`` keys are likewise absent from DECA's checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seqdeca.models.coarse_encoder import CoarseEncoder

DETAIL_DIM = 128  # DECA's detail code
JAW_DIM = 3  # axis-angle jaw pose
INIT_SIZE = 8  # the generator's first feature map side
INIT_CHANNELS = 128
BLOCK_CHANNELS = (128, 64, 64, 32, 16)  # output channels of the five upsampling blocks
UV_SIZE = INIT_SIZE * 2 ** len(BLOCK_CHANNELS)  # 256, DECA's UV displacement resolution
OUT_SCALE = 0.01  # displacement scale after tanh (DECA)
#: How the AU condition enters the generator (``model.detail_au_form``): FiLM of the blocks'
#: features, or AU-weighted maps added to DECA's (see the module docstring).
AU_FORMS = ("film", "linear")
#: The linear form's templates are stored divided by this, so that the optimizer's steps (about
#: the learning rate in size) move them this many times faster than the other weights: at the
#: detail experiment's 5e-4, a template can reach a tanh argument of 0.75 in 150 steps.
TEMPLATE_RATE = 10.0
BN_EPS_QUIRK = 0.8  # DECA's BatchNorm2d(C, 0.8)


class DetailEncoder(CoarseEncoder):
    """Image to DECA's 128-d detail code (legacy ``E_detail``): the coarse encoder's structure.

    Keys ``encoder.*``, ``layers.0.*``, ``layers.2.*`` as in DECA. Input ``(N, 3, 224, 224)`` RGB
    in [0, 1], no normalisation; ``forward`` returns an
    :class:`~seqdeca.models.coarse_encoder.EncoderOutput` whose ``codes`` are ``(N, n_detail)``.

    Args:
        n_detail: detail code size (128 for DECA).
        backbone: ``"resnet50"``, ``"resnet18"`` or ``"tiny"`` (tests).
    """

    def __init__(self, *, n_detail: int = DETAIL_DIM, backbone: str = "resnet50") -> None:
        super().__init__(n_detail, backbone=backbone)


def detail_latent(
    jaw_pose: torch.Tensor, expression: torch.Tensor, detail: torch.Tensor
) -> torch.Tensor:
    """The generator's input in DECA's order: ``[jaw_pose (N,3), expression (N,E), detail (N,Z)]``.

    Returns:
        ``(N, 3 + E + Z)`` (181 for DECA: 3 + 50 + 128).
    """
    return torch.cat([jaw_pose, expression, detail], dim=-1)


class FiLM(nn.Module):
    """Per-channel scale and shift of a feature map from a condition vector, identity at init.

    Args:
        cond_dim: K, the condition (AU) vector size.
        channels: C, the feature channels modulated.
        hidden: width of the MLP's hidden layer.
    """

    def __init__(self, cond_dim: int, channels: int, *, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(cond_dim, hidden), nn.SiLU(), nn.Linear(hidden, 2 * channels)
        )
        nn.init.zeros_(self.net[2].weight)  # zero last layer: gamma = beta = 0, exact identity
        nn.init.zeros_(self.net[2].bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``h (N, C, H, W)``, ``cond (N, K)`` -> ``(N, C, H, W)``."""
        gamma, beta = self.net(cond)[:, :, None, None].chunk(2, dim=1)  # each (N, C, 1, 1)
        return h * (1.0 + gamma) + beta


class DetailGenerator(nn.Module):
    """Latent code and AU condition to a UV displacement map (legacy ``D_detail``).

    Args:
        latent_dim: size of :func:`detail_latent` (181 for DECA: jaw 3 + expression 50 + detail
            128; 3 + E + 128 for a face model with E expression components).
        au_dim: K, size of the AU condition (e.g. 27 main AUs or Aff-Wild2's 12); 0 disables
            conditioning (no FiLM layers).
        uv_size: output side, a multiple of 32: the five upsampling blocks start from a
            (uv_size / 32)-sided map. DECA's 256 starts from 8 x 8 and is the only size its
            weights fit; smaller sizes (e.g. 64 for CPU experiments) keep every block and
            channel and shrink only the first map (and ``l1``).
        film_blocks: which of the five upsampling blocks (0-4) are followed by FiLM.
        film_hidden: hidden width of each FiLM MLP.
        max_displacement: bound of the output (a tanh scaled by it): DECA's 0.01 (1 cm); a
            smaller bound puts small wrinkles within reach of the first updates. With the
            linear form it bounds the base map and each AU map.
        au_form: "film" (FiLM after ``film_blocks``) or "linear" (one map per AU, weighted by
            the condition; no FiLM).
    """

    def __init__(
        self,
        *,
        latent_dim: int = JAW_DIM + 50 + DETAIL_DIM,
        au_dim: int = 27,
        uv_size: int = UV_SIZE,
        film_blocks: Sequence[int] = (0, 1, 2, 3, 4),
        film_hidden: int = 64,
        max_displacement: float = OUT_SCALE,
        au_form: str = "film",
    ) -> None:
        super().__init__()
        if au_form not in AU_FORMS:
            raise ValueError(f"unknown AU form {au_form!r}; choose one of {AU_FORMS}")
        if uv_size < 2 ** len(BLOCK_CHANNELS) or uv_size % 2 ** len(BLOCK_CHANNELS):
            raise ValueError(
                f"DetailGenerator uv_size must be a positive multiple of "
                f"{2 ** len(BLOCK_CHANNELS)}, got {uv_size}"
            )
        if au_dim < 0 or any(b not in range(len(BLOCK_CHANNELS)) for b in film_blocks):
            raise ValueError(f"bad AU conditioning: au_dim={au_dim}, film_blocks={film_blocks}")
        if max_displacement <= 0:
            raise ValueError(f"max_displacement must be > 0, got {max_displacement}")
        self.max_displacement = max_displacement
        self.latent_dim = latent_dim
        self.au_dim = au_dim
        self.uv_size = uv_size
        self.init_size = uv_size // 2 ** len(BLOCK_CHANNELS)  # 8 for DECA's 256
        self.l1 = nn.Sequential(nn.Linear(latent_dim, INIT_CHANNELS * self.init_size**2))
        self.conv_blocks = _deca_conv_blocks()
        # Index in conv_blocks of the LeakyReLU that ends block b: 4, 8, 12, 16, 20.
        self._block_ends = tuple(4 * (b + 1) for b in range(len(BLOCK_CHANNELS)))
        self.au_form = au_form
        use_film = au_dim > 0 and au_form == "film"
        self.film_blocks = tuple(sorted(set(film_blocks))) if use_film else ()
        self.film = nn.ModuleList(
            FiLM(au_dim, BLOCK_CHANNELS[b], hidden=film_hidden) for b in self.film_blocks
        )
        self.au_maps: nn.Conv2d | None = None
        self.au_templates: nn.Parameter | None = None
        if au_dim > 0 and au_form == "linear":
            self.au_maps = nn.Conv2d(BLOCK_CHANNELS[-1], au_dim, 3, stride=1, padding=1)
            nn.init.zeros_(self.au_maps.weight)  # zero maps: DECA's output for any condition
            nn.init.zeros_(self.au_maps.bias)
            self.au_templates = nn.Parameter(torch.zeros(au_dim, uv_size, uv_size))

    def forward(
        self, latent: torch.Tensor, au_condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Generate the displacement map.

        Args:
            latent: ``(N, latent_dim)``, see :func:`detail_latent`.
            au_condition: ``(N, K)`` AU intensities (the AU head's output), or None for DECA's
                unconditioned behaviour.

        Returns:
            ``(N, 1, uv_size, uv_size)`` displacement along the normal in UV space, in
            ``[-max_displacement, max_displacement]`` (units of the face model, metres for
            FLAME; DECA: 0.01).
        """
        n = latent.shape[0]
        if latent.shape != (n, self.latent_dim):
            raise ValueError(f"expected latent ({n}, {self.latent_dim}), got {tuple(latent.shape)}")
        if au_condition is not None and au_condition.shape != (n, self.au_dim):
            raise ValueError(
                f"expected au_condition ({n}, {self.au_dim}), got {tuple(au_condition.shape)}"
            )
        s = self.init_size
        h = self.l1(latent).view(n, INIT_CHANNELS, s, s)  # (N, 128, 8, 8) at uv_size 256
        film_at = {self._block_ends[b]: f for b, f in zip(self.film_blocks, self.film)}
        last_block = self._block_ends[-1]
        features = h
        for index, layer in enumerate(self.conv_blocks):
            h = layer(h)
            if au_condition is not None and index in film_at:
                h = film_at[index](h, au_condition)
            if index == last_block:
                features = h  # (N, 16, uv_size, uv_size)
        if au_condition is not None and self.au_maps is not None:
            templates = TEMPLATE_RATE * self.au_templates  # (K, uv_size, uv_size)
            maps = torch.tanh(self.au_maps(features) + templates)  # (N, K, uv_size, uv_size)
            h = h + torch.einsum("nk,nkhw->nhw", au_condition.to(maps.dtype), maps)[:, None]
        return h * self.max_displacement


def _deca_conv_blocks() -> nn.Sequential:
    """DECA's ``conv_blocks`` with its exact index layout (so the keys match ``D_detail``).

    0: BatchNorm2d(128); blocks at 1-4, 5-8, 9-12, 13-16, 17-20 (Upsample, Conv, BN eps 0.8,
    LeakyReLU); 21: Conv to 1 channel; 22: Tanh.
    """
    layers: list[nn.Module] = [nn.BatchNorm2d(INIT_CHANNELS)]
    c_in = INIT_CHANNELS
    for c_out in BLOCK_CHANNELS:
        layers += [
            nn.Upsample(scale_factor=2, mode="bilinear"),
            nn.Conv2d(c_in, c_out, 3, stride=1, padding=1),
            nn.BatchNorm2d(c_out, BN_EPS_QUIRK),  # eps=0.8: DECA's positional-argument quirk
            nn.LeakyReLU(0.2),
        ]
        c_in = c_out
    layers += [nn.Conv2d(c_in, 1, 3, stride=1, padding=1), nn.Tanh()]
    return nn.Sequential(*layers)
