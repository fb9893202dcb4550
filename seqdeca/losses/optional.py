"""Optional perceptual terms that need user-supplied weights: identity (VGGFace2) and ID-MRF (VGG19).

Both are OFF by default (weight 0) and then nothing is built or read. With a weight > 0 the
weight file named in the config must exist: an empty or missing path is a one-line
:class:`UserError` naming the config key. Nothing is ever downloaded.

* Identity (DECA's ``VGGFace2Loss``): a ResNet-50 (timm layout, key names as torchvision's and
  as VGGFace2's ``resnet50_ft`` weights: ``conv1.weight``, ``layer1.0.conv1.weight``, ...;
  the 8631-way ``fc`` is dropped) gives the 2048-d average-pooled feature of the render and of
  the image; the loss is ``1 - cos`` averaged over valid samples. Input: RGB [0, 1] resized to
  224, converted to BGR x 255 minus VGGFace2's mean (91.4953, 103.8827, 131.0912) as DECA does.
  Accepted files: a ``torch.save`` state_dict (optionally under ``state_dict``, ``module.``
  prefixes stripped) or VGGFace2's pickle of numpy arrays (``resnet50_ft_weight.pkl``).
* ID-MRF (DECA's detail texture term, Wang et al. 2018): torchvision's VGG19 ``features`` up to
  relu4_2 (keys ``features.N.*`` or ``N.*``; later layers and the classifier are dropped),
  ImageNet normalisation. Per layer, patches of size 1 (feature vectors) of the generated map
  are matched to the target's: cosine similarity after centring on the target's mean feature,
  relative distance ``d / (min_target d + 1e-5)``, contextual weight ``exp((1 - d_rel) / 0.5)``
  normalised over the target positions, then ``-log(mean_target max_generated weight)``.
  Layers: relu3_2 and relu4_2 (style, 1 each) plus relu4_2 (content, 1), as DECA. Approximations
  (documented, not hidden): the loss is averaged over the batch instead of summed, and the
  target's mean is taken over positions (the paper's centring) per sample.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

from seqdeca.config.schema import LossConfig
from seqdeca.errors import UserError
from seqdeca.io.safe_pickle import UnsafeFileError, load_pickle
from seqdeca.io.weights import load_weights, read_checkpoint
from seqdeca.losses.regularisers import valid_mean

__all__ = [
    "IDMRFLoss",
    "IdentityLoss",
    "build_id_mrf_loss",
    "build_identity_loss",
    "read_weight_file",
]

VGGFACE2_MEAN_BGR = (91.4953, 103.8827, 131.0912)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG19_LAYERS = {"relu3_2": 13, "relu4_2": 22}  # indices in torchvision's vgg19().features


def read_weight_file(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """Tensors of a weight file: a torch checkpoint / state_dict or a pickle of numpy arrays.

    Both kinds are read strictly (``weights_only=True`` / the restricted unpickler of
    :mod:`seqdeca.io.safe_pickle`): a file that asks for anything but arrays is refused with
    :class:`~seqdeca.io.safe_pickle.UnsafeFileError` and nothing of it runs.

    Args:
        path: the file.
        what: a short description for messages.

    Returns:
        key -> tensor, with a leading ``module.`` stripped from every key.
    """
    path = Path(path)
    if path.suffix == ".pkl":
        try:
            raw = load_pickle(path, what=what)
        except UnsafeFileError:
            raise
        except Exception as exc:
            raise UserError(f"cannot read {what} {path}: {exc}") from exc
    else:
        raw = read_checkpoint(path, what)
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise UserError(f"{what} {path} does not hold a dict of weights")
    return {
        k.removeprefix("module."): torch.as_tensor(v) for k, v in raw.items() if hasattr(v, "shape")
    }


def _with_batch_counters(module: nn.Module, state: dict[str, torch.Tensor]) -> dict:
    """Add BatchNorm ``num_batches_tracked`` entries a numpy weight file lacks (unused in eval)."""
    own = module.state_dict()
    extra = {k: own[k] for k in own if k.endswith("num_batches_tracked") and k not in state}
    return {**state, **extra}


def _freeze(module: nn.Module) -> None:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)


class IdentityLoss(nn.Module):
    """``1 - cos`` of VGGFace2 ResNet-50 features of render and image (frozen network)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = timm.create_model("resnet50", pretrained=False, num_classes=0)
        self.register_buffer(
            "mean_bgr", torch.tensor(VGGFACE2_MEAN_BGR).view(1, 3, 1, 1), persistent=False
        )
        _freeze(self)

    @classmethod
    def from_file(cls, path: str | Path) -> IdentityLoss:
        """Build and load VGGFace2 ResNet-50 weights (strict apart from the dropped ``fc``)."""
        loss = cls()
        state = _with_batch_counters(loss.net, read_weight_file(path, "VGGFace2 weights"))
        load_weights(
            loss.net,
            state,
            source=f"VGGFace2 weights {path}",
            rename=lambda k: None if k.startswith("fc.") else k,
        )
        return loss

    def train(self, mode: bool = True) -> IdentityLoss:
        """Always stays in eval mode (frozen BatchNorm statistics)."""
        return super().train(False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB [0, 1] -> (N, 2048) identity features."""
        x = F.interpolate(images, size=(224, 224), mode="bilinear", align_corners=False)
        x = x.flip(1) * 255.0 - self.mean_bgr.to(x.dtype)
        return self.net(x)

    def forward(
        self, render: torch.Tensor, image: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Identity loss.

        Args:
            render: (N, 3, H, W) rendered RGB in [0, 1].
            image: (N, 3, H, W) input RGB in [0, 1] (its features are a fixed target).
            valid: (N,) bool, or None.

        Returns:
            0-dim mean over valid samples of ``1 - cos(f(render), f(image))``.
        """
        with torch.no_grad():
            target = self.features(image)
        cos = F.cosine_similarity(self.features(render), target, dim=-1)
        return valid_mean(1 - cos, valid)


def _contextual_mrf(gen: torch.Tensor, tar: torch.Tensor) -> torch.Tensor:
    """ID-MRF of one layer: (N, C, H, W) generated and target features -> (N,) losses."""
    n, c = gen.shape[:2]
    mean = tar.reshape(n, c, -1).mean(-1)[..., None, None]
    g = F.normalize((gen - mean).reshape(n, c, -1), dim=1)  # (N, C, Pg)
    t = F.normalize((tar - mean).reshape(n, c, -1), dim=1)  # (N, C, Pt)
    dist = (1 - torch.einsum("ncg,nct->ngt", g, t)) / 2  # (N, Pg, Pt) in [0, 1]
    relative = dist / (dist.min(dim=2, keepdim=True).values + 1e-5)
    weight = torch.exp((1.0 - relative) / 0.5)
    weight = weight / weight.sum(dim=2, keepdim=True)  # contextual similarity over targets
    best = weight.max(dim=1).values  # (N, Pt): best generated match of each target patch
    return -torch.log(best.mean(dim=1))


class IDMRFLoss(nn.Module):
    """ID-MRF on VGG19 relu3_2 / relu4_2 features (frozen network)."""

    def __init__(self) -> None:
        super().__init__()
        layers = make_layers(vgg_cfgs["E"])[: max(VGG19_LAYERS.values()) + 1]
        for layer in layers:
            if isinstance(layer, nn.ReLU):
                layer.inplace = False
        self.features = layers
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        _freeze(self)

    @classmethod
    def from_file(cls, path: str | Path) -> IDMRFLoss:
        """Build and load torchvision VGG19 weights (``features`` up to relu4_2)."""
        loss = cls()
        last = max(VGG19_LAYERS.values())

        def rename(key: str) -> str | None:
            key = key.removeprefix("features.")
            head = key.split(".", 1)[0]
            return key if head.isdigit() and int(head) <= last else None

        state = read_weight_file(path, "VGG19 weights")
        load_weights(loss.features, state, source=f"VGG19 weights {path}", rename=rename)
        return loss

    def train(self, mode: bool = True) -> IDMRFLoss:
        """Always stays in eval mode."""
        return super().train(False)

    def layer_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, H, W) RGB [0, 1] -> {"relu3_2": (N, 256, H/4, W/4), "relu4_2": (N, 512, H/8, W/8)}."""
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        wanted = {i: name for name, i in VGG19_LAYERS.items()}
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x
        return out

    def forward(
        self, generated: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """ID-MRF loss.

        Args:
            generated: (N, 3, H, W) generated RGB in [0, 1] (e.g. a masked UV texture).
            target: (N, 3, H, W) target RGB in [0, 1] (fixed).
            valid: (N,) bool, or None.

        Returns:
            0-dim: style (relu3_2 + relu4_2) + content (relu4_2), averaged over valid samples.
        """
        gen = self.layer_features(generated)
        with torch.no_grad():
            tar = self.layer_features(target)
        per_sample = 2 * _contextual_mrf(gen["relu4_2"], tar["relu4_2"])
        per_sample = per_sample + _contextual_mrf(gen["relu3_2"], tar["relu3_2"])
        return valid_mean(per_sample, valid)


def _required_file(weight: float, path: str, weight_key: str, path_key: str, what: str) -> Path:
    """The weight file of an enabled optional term, or a one-line UserError naming the keys."""
    if not path:
        raise UserError(
            f"{weight_key} = {weight} needs {path_key} ({what}), but it is empty: "
            f"set {path_key}=/path/to/file or {weight_key}=0"
        )
    if not Path(path).is_file():
        raise UserError(
            f"{path_key} not found: {path} ({what}, needed because {weight_key} = {weight}); "
            f"fix the path or set {weight_key}=0"
        )
    return Path(path)


def build_identity_loss(cfg: LossConfig) -> IdentityLoss | None:
    """The identity term when ``cfg.identity > 0`` (weights from ``cfg.identity_weights``)."""
    if cfg.identity <= 0:
        return None
    path = _required_file(
        cfg.identity,
        cfg.identity_weights,
        "loss.identity",
        "loss.identity_weights",
        "VGGFace2 ResNet-50 weights",
    )
    return IdentityLoss.from_file(path)


def build_id_mrf_loss(cfg: LossConfig) -> IDMRFLoss | None:
    """The ID-MRF term when ``cfg.id_mrf > 0`` (weights from ``cfg.id_mrf_weights``)."""
    if cfg.id_mrf <= 0:
        return None
    path = _required_file(
        cfg.id_mrf, cfg.id_mrf_weights, "loss.id_mrf", "loss.id_mrf_weights", "VGG19 weights"
    )
    return IDMRFLoss.from_file(path)
