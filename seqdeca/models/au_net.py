"""The AU network (legacy AUNet / AFG): OpenGraphAU's MEFARG structure, checkpoint-compatible.

Pipeline for N images (RGB in [0, 1], 224 x 224; ImageNet mean/std normalisation happens inside):

1. ``backbone``: a ResNet-50 trunk (timm, torchvision key names ``conv1``, ``bn1``,
   ``layer1..4``; no ``fc``) -> layer4 map (N, 2048, 7, 7) -> D = 49 tokens (N, 49, 2048).
   ``backbone="tiny"`` is a five-conv stand-in for tests (64 channels, same stride 32).
2. ``global_linear``: a per-token :class:`LinearBlock` to C = 512 channels -> (N, D, C).
3. ``head.main_class_linears.{k}``: one :class:`LinearBlock` (C -> C) per main AU, applied to every
   token -> (N, K, D, C); the mean over tokens gives the node tokens (N, K, C) (legacy "afn").
4. graph stage (``head.gnn`` and, in stage 2, ``head.edge_extractor``; see
   :mod:`seqdeca.models.au_graph`) refines the nodes, shape unchanged.
5. outputs: 27 main + 14 left/right probabilities. Output k < K is the cosine similarity between
   node k and ``relu(head.main_sc[k])``; the sub outputs read the main nodes
   ``SUB_NODE_INDICES`` against ``relu(head.sub_sc[2p])`` (left) and ``relu(head.sub_sc[2p+1])``
   (right). Nodes and prototypes are non-negative, so every output is in [0, 1]: these are
   already probabilities and must NEVER be passed through a sigmoid (nor used as logits).

Module names equal OpenGraphAU's checkpoint keys (after stripping ``module.``), so importing a
released checkpoint is an identity mapping (:mod:`seqdeca.models.au_import`).

BatchNorm: ``LinearBlock`` normalises over channels (statistics over batch and tokens), the graph
stages normalise over the node / edge axis. In train mode all depend on the batch: a frozen AUNet
must be kept in ``eval()``.

Shapes: N images, D tokens, K = 27 main AUs, C channels, S = 14 sub outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqdeca.au_names import AFFWILD2_MAIN_INDICES, SUB_NODE_INDICES
from seqdeca.models.au_graph import EdgeExtractor, GatedGraph, SimilarityGraph
from seqdeca.models.trunk import build_trunk

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LinearBlock(nn.Module):
    """Per-token Linear -> BatchNorm over channels -> ReLU (keys ``fc.*``, ``bn.*``).

    OpenGraphAU's block also holds a Dropout with p = 0 (no parameters), omitted here.

    Args:
        in_channels: input channels.
        out_channels: output channels.
    """

    def __init__(self, *, in_channels: int, out_channels: int):
        super().__init__()
        self.fc = nn.Linear(in_channels, out_channels)
        self.bn = nn.BatchNorm1d(out_channels)
        nn.init.normal_(self.fc.weight, 0.0, math.sqrt(2.0 / out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D, Cin) -> (N, D, Cout), non-negative."""
        y = self.fc(x).transpose(1, 2)  # BatchNorm1d wants channels on axis 1: (N, Cout, D)
        return F.relu(self.bn(y)).transpose(1, 2)


@dataclass(frozen=True)
class AUNetOutput:
    """What :class:`AUNet` returns.

    Attributes:
        afn_tokens: (N, K, C) node tokens before the graph stage (legacy "afn").
        au_tokens: (N, K, C) node tokens after the graph stage (the AU features to fuse).
        probabilities: (N, K + S) in [0, 1], order ``AU_OUTPUT_NAMES``; cosine similarities,
            NOT logits: never apply a sigmoid.
    """

    afn_tokens: torch.Tensor
    au_tokens: torch.Tensor
    probabilities: torch.Tensor

    @property
    def main(self) -> torch.Tensor:
        """(N, K) probabilities of the main AUs."""
        return self.probabilities[:, : self.au_tokens.shape[1]]


def affwild2_probabilities(probabilities: torch.Tensor) -> torch.Tensor:
    """(N, >=27) AU-net probabilities -> (N, 12) in Aff-Wild2's AU order (``AFFWILD2_AU_NAMES``)."""
    return probabilities[:, list(AFFWILD2_MAIN_INDICES)]


def cosine_to_prototypes(nodes: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each node with its own ReLU'd prototype.

    Args:
        nodes: (N, P, C) features.
        prototypes: (P, C) raw prototype parameters (ReLU is applied here).

    Returns:
        (N, P), in [0, 1] when the nodes are non-negative.
    """
    proto = F.normalize(F.relu(prototypes), p=2, dim=-1)
    return (F.normalize(nodes, p=2, dim=-1) * proto[None]).sum(dim=-1)


class AUNodeHead(nn.Module):
    """Per-AU feature generator, graph stage and prototype outputs (checkpoint prefix ``head.``).

    Args:
        channels: C.
        num_main: K main AUs (nodes).
        num_sub: S left/right outputs: 14 (pairs read from ``SUB_NODE_INDICES``) or 0.
        stage: 1 (top-K similarity graph) or 2 (edge features + gated GCN).
        neighbours: top-K of the stage-1 graph.
        metric: stage-1 similarity, "dots" or "cosine".
    """

    def __init__(
        self,
        *,
        channels: int,
        num_main: int,
        num_sub: int,
        stage: int,
        neighbours: int = 4,
        metric: str = "dots",
    ):
        super().__init__()
        if num_sub not in (0, 2 * len(SUB_NODE_INDICES)):
            raise ValueError(f"num_sub must be 0 or {2 * len(SUB_NODE_INDICES)}, got {num_sub}")
        if num_sub and num_main <= max(SUB_NODE_INDICES):
            raise ValueError(f"num_main must exceed {max(SUB_NODE_INDICES)} when num_sub > 0")
        self.stage = stage
        self.main_class_linears = nn.ModuleList(
            LinearBlock(in_channels=channels, out_channels=channels) for _ in range(num_main)
        )
        if stage == 1:
            self.gnn = SimilarityGraph(
                channels=channels, num_nodes=num_main, neighbours=neighbours, metric=metric
            )
        elif stage == 2:
            self.edge_extractor = EdgeExtractor(channels=channels, num_nodes=num_main)
            self.gnn = GatedGraph(channels=channels, num_nodes=num_main, num_layers=2)
        else:
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        self.main_sc = nn.Parameter(torch.empty(num_main, channels))
        self.sub_sc = nn.Parameter(torch.empty(num_sub, channels))
        nn.init.xavier_uniform_(self.main_sc)
        if num_sub:
            nn.init.xavier_uniform_(self.sub_sc)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Node tokens and probabilities.

        Args:
            tokens: (N, D, C) projected backbone tokens.

        Returns:
            afn_tokens (N, K, C), au_tokens (N, K, C), probabilities (N, K + S) in [0, 1].
        """
        per_au = torch.stack([block(tokens) for block in self.main_class_linears], dim=1)
        afn = per_au.mean(dim=2)  # (N, K, D, C) -> (N, K, C)
        if self.stage == 1:
            nodes = self.gnn(afn)
        else:
            nodes, _ = self.gnn(afn, self.edge_extractor(per_au, tokens))
        return afn, nodes, self.probabilities(nodes)

    def probabilities(self, nodes: torch.Tensor) -> torch.Tensor:
        """(N, K, C) refined nodes -> (N, K + S) cosine outputs, main first then L/R pairs."""
        main = cosine_to_prototypes(nodes, self.main_sc)
        if self.sub_sc.shape[0] == 0:
            return main
        # Sub pair p reads main node SUB_NODE_INDICES[p] twice: prototypes 2p (left), 2p+1 (right).
        pair_nodes = nodes[:, list(SUB_NODE_INDICES)].repeat_interleave(2, dim=1)  # (N, S, C)
        return torch.cat([main, cosine_to_prototypes(pair_nodes, self.sub_sc)], dim=1)


class AUNet(nn.Module):
    """The AU network (MEFARG / OpenGraphAU layout); see the module docstring.

    Args:
        backbone: trunk "resnet50" (2048 channels), "resnet18" (512, CPU experiments) or "tiny"
            (64, tests only).
        num_main: K main AUs (27 for OpenGraphAU).
        num_sub: S left/right outputs (14, or 0 for none).
        channels: C of the node tokens (512 for ResNet-50 checkpoints: 2048 // 4).
        stage: 1 or 2, the graph stage of the checkpoint to be loaded.
        neighbours: top-K of the stage-1 graph.
        metric: stage-1 similarity, "dots" or "cosine".

    Keep a frozen AUNet in ``eval()``: its BatchNorms run over the node axis.
    """

    def __init__(
        self,
        *,
        backbone: str = "resnet50",
        num_main: int = 27,
        num_sub: int = 14,
        channels: int = 512,
        stage: int = 1,
        neighbours: int = 4,
        metric: str = "dots",
    ):
        super().__init__()
        self.backbone_name = backbone
        self.stage = stage
        self.backbone = build_trunk(backbone)
        self.global_linear = LinearBlock(
            in_channels=self.backbone.num_features, out_channels=channels
        )
        self.head = AUNodeHead(
            channels=channels,
            num_main=num_main,
            num_sub=num_sub,
            stage=stage,
            neighbours=neighbours,
            metric=metric,
        )
        # Not persistent: they are constants, not checkpoint entries.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> ImageNet-normalised (N, 3, H, W)."""
        return (images - self.mean) / self.std

    def tokens(self, normalised: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised images -> (N, D, C) projected tokens, D = (H/32) * (W/32)."""
        fmap = self.backbone.forward_features(normalised)  # (N, Cb, h, w)
        return self.global_linear(fmap.flatten(2).transpose(1, 2))  # (N, h*w, Cb) -> (N, D, C)

    def forward_normalised(self, normalised: torch.Tensor) -> AUNetOutput:
        """Like :meth:`forward` for images already ImageNet-normalised."""
        afn, nodes, probabilities = self.head(self.tokens(normalised))
        return AUNetOutput(afn_tokens=afn, au_tokens=nodes, probabilities=probabilities)

    def forward(self, images: torch.Tensor) -> AUNetOutput:
        """AU tokens and probabilities.

        Args:
            images: (N, 3, H, W) RGB in [0, 1], normally 224 x 224 face crops (OpenGraphAU was
                trained on Resize 256 + CenterCrop 224). NOT ImageNet-normalised: that is done here.

        Returns:
            :class:`AUNetOutput` with tokens (N, K, C) and probabilities (N, K + S) in [0, 1]
            (never pass them through a sigmoid).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W), got {tuple(images.shape)}")
        return self.forward_normalised(self.normalise(images))
