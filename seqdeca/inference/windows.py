"""Windows centred on every frame, and the network run over a clip's crops with them.

Frame t is predicted from the window ``[t - (W-1)//2, ..., t + W//2]`` of W frames; at the ends
of the clip the window repeats the first / last frame (indices clamped). Frames without a face
inside a window are padding (``valid`` False: the temporal fusion ignores them).

:func:`predict_frames` encodes every frame ONCE (the coarse encoder and AU net are per-frame
networks), then gathers the per-frame encodings into windows, runs the temporal fusion on them
and decodes only the centre frame of each window. The result equals
``model(images[windows])[:, centre]`` (see the tests) at about 1/W of the encoder cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from seqdeca.models.coarse_encoder import INPUT_SIZE
from seqdeca.models.outputs import Encoded, SeqDECAOutput, cat_outputs
from seqdeca.models.seqdeca_model import STAGES, SeqDECA, decoded_codes

__all__ = ["centre_offset", "centred_windows", "predict_frames"]


def centre_offset(window: int) -> int:
    """Position of the predicted frame inside a window of ``window`` frames ((W - 1) // 2)."""
    return (int(window) - 1) // 2


def centred_windows(num_frames: int, window: int) -> np.ndarray:
    """Frame indices of the window centred on every frame, edges replicated.

    Args:
        num_frames: T (>= 1).
        window: W (>= 1); an even W has one more frame after the centre than before it.

    Returns:
        (T, W) int64; row t is ``clip(t - (W-1)//2 + arange(W), 0, T - 1)``.
    """
    if num_frames < 1 or window < 1:
        raise ValueError(f"need num_frames >= 1 and window >= 1, got {num_frames}, {window}")
    offsets = np.arange(window, dtype=np.int64) - centre_offset(window)
    return np.clip(
        np.arange(num_frames, dtype=np.int64)[:, None] + offsets[None], 0, num_frames - 1
    )


def _to_input(model: SeqDECA, crops: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) float crops at the network's input size.

    ResNet-50 encoders need 224 x 224 (antialiased bilinear resize when S differs); the small
    test backbones take any size and get the crops unchanged.
    """
    crops = crops.float()
    if model.coarse_encoder.backbone != "resnet50" or crops.shape[-2:] == (INPUT_SIZE, INPUT_SIZE):
        return crops
    return F.interpolate(
        crops, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True
    ).clamp(0, 1)


def _encode_frames(
    model: SeqDECA, crops: torch.Tensor, frames: torch.Tensor, batch: int
) -> Encoded:
    """Per-frame encodings (n, ...) of ``crops[frames]`` in batches of ``batch`` frames
    (``valid`` all True: the windows bring their own)."""
    parts: list[Encoded] = []
    for start in range(0, len(frames), batch):
        images = _to_input(model, crops[frames[start : start + batch]])[None]  # (1, n, 3, 224, 224)
        parts.append(model.encode(images).map_tensors(lambda v: v[0]))
    return cat_outputs(parts)


def _predict_batch(
    model: SeqDECA,
    encoded: Encoded,
    crops: torch.Tensor,
    rows: torch.Tensor,
    win: torch.Tensor,
    win_valid: torch.Tensor,
    *,
    per_frame: bool,
    stage: str,
    render_shape: bool,
) -> SeqDECAOutput:
    """Outputs (B, ...) of the centre frames of B windows (rows: (B, W) encoding rows)."""
    c = centre_offset(win.shape[1])
    windowed = replace(encoded.map_tensors(lambda v: v[rows]), valid=win_valid)  # (B, W, ...)
    fused = model.fuse(windowed, per_frame=per_frame)
    # the centre frame of each window: (B, 1, ...)
    windowed, fused = (x.map_tensors(lambda v: v[:, c : c + 1]) for x in (windowed, fused))
    codes = decoded_codes(windowed, fused)
    decoded = model.decode(codes, render_shape=render_shape)
    detail = None
    if stage == "detail":
        images = _to_input(model, crops[win[:, c]])[:, None]  # (B, 1, 3, 224, 224)
        condition = {"au_intensities": fused.au_intensities}
        detail = model.detail(images, codes | condition, decoded.vertices)
    out = SeqDECAOutput(**codes, encoded=windowed, fused=fused, decoded=decoded, detail=detail)
    return out.map_tensors(lambda v: v[:, 0].cpu())


@torch.no_grad()
def predict_frames(
    model: SeqDECA,
    crops: torch.Tensor,
    valid: torch.Tensor,
    *,
    window: int = 3,
    batch_size: int = 8,
    per_frame: bool = False,
    stage: str = "temporal",
    render_shape: bool = False,
    centres: Sequence[int] | np.ndarray | torch.Tensor | None = None,
) -> SeqDECAOutput:
    """Run the network on a clip with a window centred on every frame.

    Args:
        model: the network (eval mode).
        crops: (T, 3, S, S) face crops, RGB in [0, 1], on the model's device (resized to 224
            for ResNet-50 encoders when S differs).
        valid: (T,) bool, frames with a face (the others are padding inside windows).
        window: W, frames per window (clamped to ``model.temporal_fusion.max_frames``).
        batch_size: windows per fusion/decode batch; the encoders run on ``batch_size * W``
            frames at a time.
        per_frame: run the fusion on single frames (forced when the model has
            ``use_temporal=False``, the per-frame baseline).
        stage: "temporal" or "detail" (adds the detail outputs).
        render_shape: render ``decoded.shape_image``.
        centres: frames to predict (default: all T). Windows are still built over the whole
            ``crops`` (pass context frames around a chunk and predict only its own frames).

    Returns:
        :class:`SeqDECAOutput` of (n, ...) CPU tensors, n = number of predicted frames: the
        :meth:`SeqDECA.forward` outputs of the centre frame of each window
        (``render_au_probabilities`` None).

    Raises:
        ValueError: ``centres`` is empty (no frame to predict).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
    t = crops.shape[0]
    per_frame = per_frame or not model.use_temporal
    window = 1 if per_frame else max(1, min(int(window), model.temporal_fusion.max_frames))
    device = crops.device
    wanted = torch.arange(t) if centres is None else torch.as_tensor(centres, dtype=torch.long)
    windows = torch.from_numpy(centred_windows(t, window))[wanted].to(device)  # (n, W)
    needed = torch.unique(windows)  # sorted frames whose encodings are used
    row_of = torch.full((t,), -1, dtype=torch.long, device=device)
    row_of[needed] = torch.arange(len(needed), device=device)
    encoded = _encode_frames(model, crops, needed, max(1, batch_size * window))
    valid = valid.to(device=device, dtype=torch.bool)
    parts = []
    for start in range(0, len(windows), batch_size):
        win = windows[start : start + batch_size]
        parts.append(
            _predict_batch(
                model,
                encoded,
                crops,
                row_of[win],
                win,
                valid[win],
                per_frame=per_frame,
                stage=stage,
                render_shape=render_shape,
            )
        )
    if not parts:
        raise ValueError("predict_frames got no frame to predict (centres is empty)")
    return cat_outputs(parts)
