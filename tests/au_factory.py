"""Writes checkpoints in OpenGraphAU's format (key names and shapes of its MEFARG model).

The key layout is spelled out here independently of seqdeca's modules (from OpenGraphAU's
model definitions: torchvision ResNet-50 without ``fc``, LinearBlock = fc + bn, the stage-1
ANFL head and the stage-2 MEFL head), so a round trip checks that our names really match.
Values are random; BatchNorm running variances are positive.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

Shapes = dict[str, tuple[int, ...]]


def _bn(prefix: str, n: int) -> Shapes:
    keys = ("weight", "bias", "running_mean", "running_var")
    return {f"{prefix}.{k}": (n,) for k in keys} | {f"{prefix}.num_batches_tracked": ()}


def _linear(prefix: str, cin: int, cout: int, bias: bool = True) -> Shapes:
    out = {f"{prefix}.weight": (cout, cin)}
    return out | ({f"{prefix}.bias": (cout,)} if bias else {})


def resnet50_shapes(prefix: str = "backbone") -> Shapes:
    """torchvision ResNet-50 (Bottleneck [3, 4, 6, 3], expansion 4) without ``fc``."""
    shapes: Shapes = {f"{prefix}.conv1.weight": (64, 3, 7, 7)} | _bn(f"{prefix}.bn1", 64)
    inplanes = 64
    for layer, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for b in range(blocks):
            p = f"{prefix}.layer{layer}.{b}"
            shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
            shapes |= _bn(f"{p}.bn1", planes)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            shapes |= _bn(f"{p}.bn2", planes)
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            shapes |= _bn(f"{p}.bn3", planes * 4)
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                shapes |= _bn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    return shapes


def _linear_block(prefix: str, cin: int, cout: int) -> Shapes:
    return _linear(f"{prefix}.fc", cin, cout) | _bn(f"{prefix}.bn", cout)


def head_shapes(*, stage: int, channels: int, num_main: int = 27, num_sub: int = 14) -> Shapes:
    """``head.*`` keys of OpenGraphAU's stage-1 (ANFL) or stage-2 (MEFL) head."""
    c, k = channels, num_main
    shapes: Shapes = {}
    for i in range(k):
        shapes |= _linear_block(f"head.main_class_linears.{i}", c, c)
    shapes["head.main_sc"] = (k, c)
    shapes["head.sub_sc"] = (num_sub, c)
    if stage == 1:
        shapes |= _linear("head.gnn.U", c, c) | _linear("head.gnn.V", c, c) | _bn("head.gnn.bnv", k)
        return shapes
    for attn in ("FAM", "ARM"):
        p = f"head.edge_extractor.{attn}"
        shapes |= _linear(f"{p}.linear_q", c, c // 2) | _linear(f"{p}.linear_k", c, c // 2)
        shapes |= _linear(f"{p}.linear_v", c, c)
    shapes |= _linear("head.edge_extractor.edge_proj", c, c) | _bn("head.edge_extractor.bn", k * k)
    for layer in range(2):
        p = f"head.gnn.graph_layers.{layer}"
        for name in ("U", "V", "A", "B", "E"):
            shapes |= _linear(f"{p}.{name}", c, c, bias=False)
        shapes |= _bn(f"{p}.bnv", k) | _bn(f"{p}.bne", k * k)
    return shapes


def opengraphau_state_dict(
    *,
    stage: int,
    channels: int = 512,
    num_main: int = 27,
    num_sub: int = 14,
    backbone: Mapping[str, tuple[int, ...]] | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random tensors under OpenGraphAU's (un-prefixed) keys.

    Args:
        stage: 1 or 2.
        channels: C (512 for ResNet-50).
        backbone: ``backbone.*`` shapes; default the ResNet-50 layout (2048 channels out). For
            another trunk, ``global_linear``'s input width is the output count of its last conv.
        seed: random seed.
    """
    bb = dict(backbone) if backbone is not None else resnet50_shapes()
    conv_outs = [s[0] for k, s in bb.items() if len(s) == 4]
    in_channels = 2048 if backbone is None else conv_outs[-1]
    shapes = bb | _linear_block("global_linear", in_channels, channels)
    shapes |= head_shapes(stage=stage, channels=channels, num_main=num_main, num_sub=num_sub)
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(int(torch.randint(1, 1000, (), generator=gen)))
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.05
    return state


def write_opengraphau_checkpoint(path: str | Path, state: Mapping[str, torch.Tensor]) -> Path:
    """Save ``{epoch, state_dict (module.-prefixed), optimizer}`` like OpenGraphAU's training."""
    path = Path(path)
    prefixed = {f"module.{k}": v for k, v in state.items()}
    torch.save(
        {"epoch": 20, "state_dict": prefixed, "optimizer": {"state": {}, "param_groups": []}}, path
    )
    return path
