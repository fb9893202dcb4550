"""Loss terms. Each returns an UNWEIGHTED 0-dim tensor; weights come from ``LossConfig``.

Modules: :mod:`~seqdeca.losses.landmarks` (DECA-weighted 68-point L1, MediaPipe L1, eye / lip
closure), :mod:`~seqdeca.losses.photometric` (3-class masked L1), :mod:`~seqdeca.losses.regularisers`
(shape / expression / texture / light / jaw, and the masked means every term shares),
:mod:`~seqdeca.losses.temporal` (window smoothness), :mod:`~seqdeca.losses.au` (AU head vs
labels / proxies, AU consistency), :mod:`~seqdeca.losses.detail` (UV photometric, z_reg, z_diff,
z_sym), :mod:`~seqdeca.losses.adversarial` (WGAN-GP / hinge / BCE, AU regression),
:mod:`~seqdeca.losses.optional` (identity, ID-MRF; user weight files) and
:mod:`~seqdeca.losses.weights` (config -> weights, weighted sum).

``optional`` is not imported here: it pulls timm / torchvision and is only needed when enabled.
"""

from seqdeca.losses.adversarial import (
    au_regression_loss,
    critic_loss,
    generator_loss,
    gradient_penalty,
)
from seqdeca.losses.au import (
    au_consistency_loss,
    au_label_loss,
    au_proxy_loss,
    au_supervision_loss,
)
from seqdeca.losses.detail import (
    displacement_regulariser,
    invisible_mask,
    shading_smoothness,
    symmetry_loss,
    uv_photometric_loss,
)
from seqdeca.losses.landmarks import (
    contour_weights,
    deca_landmark_weights,
    eye_closure_loss,
    landmark68_weights,
    landmark_loss,
    lip_closure_loss,
    mediapipe_landmark_loss,
)
from seqdeca.losses.photometric import photometric_loss
from seqdeca.losses.regularisers import code_l2, jaw_regulariser, light_regulariser, valid_mean
from seqdeca.losses.temporal import temporal_smoothness
from seqdeca.losses.weights import (
    WeightedLoss,
    coarse_options,
    coarse_weights,
    critic_weights,
    detail_weights,
    landmark_point_weights,
    uses_critic,
    weighted_sum,
)

__all__ = [
    "WeightedLoss",
    "au_consistency_loss",
    "au_label_loss",
    "au_proxy_loss",
    "au_regression_loss",
    "au_supervision_loss",
    "coarse_options",
    "coarse_weights",
    "code_l2",
    "contour_weights",
    "critic_loss",
    "critic_weights",
    "deca_landmark_weights",
    "detail_weights",
    "displacement_regulariser",
    "eye_closure_loss",
    "generator_loss",
    "gradient_penalty",
    "invisible_mask",
    "jaw_regulariser",
    "landmark68_weights",
    "landmark_loss",
    "landmark_point_weights",
    "light_regulariser",
    "lip_closure_loss",
    "mediapipe_landmark_loss",
    "photometric_loss",
    "shading_smoothness",
    "symmetry_loss",
    "temporal_smoothness",
    "uses_critic",
    "uv_photometric_loss",
    "valid_mean",
    "weighted_sum",
]
