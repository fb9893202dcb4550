"""The two ways video2mesh turns a chunk of tracked frames into face-model codes and renders.

* :class:`NetworkEngine` (``network`` mode): a trained :class:`~seqdeca.models.SeqDECA` on the
  face crops, every frame predicted with its centred window (:func:`predict_frames`).
* :class:`FitEngine` (``fit`` mode, no trained weights): the face model fitted to the tracked
  landmarks (:class:`~seqdeca.inference.fit.ClipFitter`), its texture coefficients and every
  frame's SH light estimated from the frames (:mod:`seqdeca.inference.clip_appearance`).

Both return, for the chunk's own frames, a :class:`ChunkResult`: codes (n, ...) for
``codes.npz``, vertices, model landmarks in normalised crop coordinates and (when asked)
renders for the overlay. With several faces in a clip, the ``face=k`` argument keeps each
face's state apart (fit mode: its own identity).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from seqdeca.config.schema import FitConfig
from seqdeca.face_model.assets import FaceModelAssets
from seqdeca.face_model.fitting import prepare_forward_mode
from seqdeca.face_model.layer import FaceModel
from seqdeca.geometry.camera import project_weak_perspective
from seqdeca.geometry.mesh import vertex_normals
from seqdeca.geometry.openings import MeshOpenings
from seqdeca.inference.checkpoint import LoadedModel
from seqdeca.inference.clip_appearance import (
    ClipAppearance,
    check_appearance,
    fit_light,
    frame_inputs,
)
from seqdeca.inference.fit import SHAPE_SPAN, ClipFitter
from seqdeca.inference.stream import ChunkFrames
from seqdeca.inference.windows import predict_frames
from seqdeca.models.outputs import SeqDECAOutput
from seqdeca.render.renderer import Renderer

__all__ = ["ChunkResult", "FitEngine", "NetworkEngine", "fit_light"]

#: Codes of the network written to codes.npz (when present in its outputs), in file order.
NETWORK_CODES = (
    "shape",
    "texture",
    "expression",
    "global_pose",
    "jaw_pose",
    "pose",
    "cam",
    "light",
    "coarse_expression",
    "coarse_pose",
    "coarse_light",
    "au_intensities",
    "au_probabilities",
    "detail_code",
)


def network_codes(out: SeqDECAOutput) -> dict[str, np.ndarray]:
    """The :data:`NETWORK_CODES` arrays (n, ...) of ``predict_frames`` outputs, by npz name
    ("coarse_*": the per-frame encoder's; "detail_code" only with the detail stage)."""
    detail_code = None if out.detail is None else out.detail.detail_code
    arrays = out.codes() | {
        "global_pose": out.pose[..., :3],
        "coarse_expression": out.encoded.expression,
        "coarse_pose": out.encoded.pose,
        "coarse_light": out.encoded.light,
        "au_intensities": out.fused.au_intensities,
        "au_probabilities": out.encoded.au_probabilities,
        "detail_code": detail_code,
    }
    return {k: _numpy(arrays[k]) for k in NETWORK_CODES if arrays[k] is not None}


#: Frames rendered at a time for the overlay (bounds the rasterizer's memory).
RENDER_BATCH = 16


@dataclass
class ChunkResult:
    """Outputs for the n own frames of a chunk (rows of invalid frames are meaningless).

    Attributes:
        codes: name -> (n, ...) float32 array for codes.npz.
        vertices: (n, V, 3) metres, model space.
        landmarks: (n, L, 2) model landmarks, normalised crop coordinates (y down).
        render, alpha, shape_image: (n, 3|1, R, R) overlay renders (None when not asked, or
            until :meth:`renders` makes them).
        textures: (n, 3, Ht, Wt) per-frame albedo for the OBJ textures, or None.
        texture_map: (Ht, Wt, 3) in [0, 1], the face's texture for every mesh of the clip so far
            (fit mode: the model albedo of its texture coefficients, or the extracted map), or
            None.
        detail_vertices: (n, V, 3) coarse vertices moved along their normals by the detail
            displacement (detail stage only), or None.
    """

    codes: dict[str, np.ndarray]
    vertices: torch.Tensor
    landmarks: torch.Tensor
    render: torch.Tensor | None = None
    alpha: torch.Tensor | None = None
    shape_image: torch.Tensor | None = None
    textures: torch.Tensor | None = None
    detail_vertices: torch.Tensor | None = None
    texture_map: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    #: makes the overlay renders on demand (fit mode draws them where the overlay is written,
    #: beside the next chunk's fit); None when they are made already or not asked
    pending_renders: Callable[[], tuple[torch.Tensor, ...]] | None = None

    def renders(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(render, alpha, shape_image), made now if pending; None when not asked."""
        if self.pending_renders is not None:
            self.render, self.alpha, self.shape_image = self.pending_renders()
            self.pending_renders = None
        if self.render is None or self.alpha is None or self.shape_image is None:
            return None
        return self.render, self.alpha, self.shape_image


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


class NetworkEngine:
    """``network`` mode: the loaded network on face crops with centred windows.

    Args:
        loaded: the model (:func:`~seqdeca.inference.checkpoint.load_model`).
        window: W, frames per centred window (odd; resolved for this checkpoint by
            :func:`~seqdeca.inference.settings.network_window`).
        batch_size: windows per network forward.
        crop_size: side of the face crops the network is given, pixels.
        detail: also run the detail stage (detail OBJs).
    """

    mode = "network"
    needs_shape = False
    threads: int | None = None  # big convolutions use every intra-op thread

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        window: int,
        batch_size: int,
        crop_size: int,
        detail: bool = False,
    ) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.face_model: FaceModel = loaded.model.face_model
        self.window, self.batch_size, self.crop_size = window, batch_size, crop_size
        self.detail = detail
        self.device = next(self.model.parameters()).device
        self.description = f"{loaded.kind} checkpoint {loaded.path}"

    def start_clip(self) -> None:
        """Nothing to reset between clips."""

    def crops(self, data: ChunkFrames) -> torch.Tensor:
        """(n, 3, S, S) float crops in [0, 1] on the model's device."""
        crops = torch.from_numpy(data.crops(self.crop_size)).to(self.device)
        return crops.permute(0, 3, 1, 2).float() / 255

    def predict(self, data: ChunkFrames, *, render: bool, face: int = 0) -> ChunkResult:
        """The chunk's own frames of one face (``face``: unused, the network keeps no state)."""
        own = np.arange(len(data.valid))[data.own]
        out = predict_frames(
            self.model,
            self.crops(data),
            torch.from_numpy(data.valid),
            window=self.window,
            batch_size=self.batch_size,
            stage="detail" if self.detail else "temporal",
            render_shape=render,
            centres=own,
        )
        decoded = out.decoded
        landmarks = decoded.landmarks68 if decoded.landmarks_mp is None else decoded.landmarks_mp
        result = ChunkResult(
            codes=network_codes(out),
            vertices=decoded.vertices,
            landmarks=landmarks,
            textures=decoded.albedo,
        )
        if render:
            result.render, result.alpha = decoded.render, decoded.render_mask
            result.shape_image = decoded.shape_image
        if self.detail:
            result.detail_vertices = detail_vertices(
                self.model, decoded.vertices, out.detail.displacement
            )
        return result


def detail_vertices(model, vertices: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Coarse vertices (n, V, 3) moved along their normals by the UV displacement.

    The displacement map (n, 1, Huv, Wuv) (metres) is sampled at every UV corner of a vertex and
    averaged: a per-vertex version of DECA's detail mesh (which needs DECA's dense template).
    """
    fm = model.face_model
    if fm.verts_uvs is None:
        return vertices
    uv = fm.verts_uvs[fm.faces_uvs].reshape(-1, 2).to(displacement)  # (3F, 2), v up
    grid = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2], dim=-1)  # grid_sample x, y (down)
    grid = grid[None, :, None].expand(len(vertices), -1, -1, -1)
    samples = torch.nn.functional.grid_sample(displacement.to(grid), grid, align_corners=False)
    samples = samples[:, 0, :, 0]  # (n, 3F)
    index = fm.faces.reshape(-1).to(samples.device)
    total = torch.zeros(len(vertices), fm.num_vertices, device=samples.device)
    count = torch.zeros(fm.num_vertices, device=samples.device)
    total.index_add_(1, index, samples)
    count.index_add_(0, index, torch.ones_like(index, dtype=count.dtype))
    disp = total / count.clamp_min(1)
    normals = vertex_normals(vertices.to(samples.device), fm.faces.to(samples.device))
    return vertices.to(samples.device) + normals * disp[..., None]


class FitEngine:
    """``fit`` mode: a face model fitted to the tracked landmarks, its appearance estimated from
    the frames (``fit.texture``, :mod:`~seqdeca.inference.clip_appearance`).

    :func:`~seqdeca.inference.pipeline.build_fit_engine` builds one from the config.

    Args:
        face_model: the face model, on ``device``.
        assets: its assets (the reduced fitting model is built from them).
        fit: the fit settings (priors, smoothness, iterations, texture mode and prior).
        window: W, frames per centred window (> 0).
        crop_size: side of the face crops the landmarks are mapped into, pixels.
        renderer: the face model's renderer at the render size (square images), on ``device``;
            None for a model without UVs (no renders, no appearance).
        light_renderer: the same at the lights' smaller size
            (:func:`~seqdeca.inference.clip_appearance.light_size`); None with ``renderer``.
        device: torch device for fitting and rendering.

    Raises:
        UserError: ``fit.texture`` or ``fit.texture_prior`` is not valid.
    """

    mode = "fit"
    needs_shape = True
    threads: int | None = 1  # many small operations: one thread is fastest

    def __init__(
        self,
        face_model: FaceModel,
        assets: FaceModelAssets,
        fit: FitConfig,
        *,
        window: int,
        crop_size: int,
        renderer: Renderer | None = None,
        light_renderer: Renderer | None = None,
        device: str = "cpu",
    ) -> None:
        self.texture_mode = check_appearance(fit.texture, fit.texture_prior)
        self.fit, self.window, self.crop_size = fit, window, crop_size
        self.device = torch.device(device)
        self.assets, self.face_model = assets, face_model
        self.renderer, self.light_renderer = renderer, light_renderer
        self.openings = MeshOpenings(assets.faces, face_model.num_vertices)
        prepare_forward_mode()  # now, before video2mesh's threads start
        self._fitters: dict[int, ClipFitter] = {}
        self._appearances: dict[int, ClipAppearance] = {}
        self.description = f"fit to landmarks ({self.face_model.name}), texture {fit.texture}"
        self.shape_span = SHAPE_SPAN

    @property
    def shape(self) -> torch.Tensor | None:
        """The identity of the clip's first face (None until fitted)."""
        return self.face_shape(0)

    def face_shape(self, face: int = 0) -> torch.Tensor | None:
        """(S,) identity of face ``face`` of the clip, None until :meth:`fit_shape`."""
        fitter = self._fitters.get(face)
        return None if fitter is None else fitter.shape

    def start_clip(self) -> None:
        """A new clip: a new identity and appearance are estimated for each of its faces (each
        face's state is made when first used)."""
        self._fitters, self._appearances = {}, {}

    def _fitter(self, face: int) -> ClipFitter:
        if face not in self._fitters:
            self._fitters[face] = ClipFitter(
                self.face_model, self.assets, self.fit, window=self.window
            )
        return self._fitters[face]

    def appearance(self, face: int = 0) -> ClipAppearance | None:
        """The appearance state of face ``face`` (None for a model without UVs: no renders)."""
        if self.renderer is None:
            return None
        if face not in self._appearances:
            self._appearances[face] = ClipAppearance(
                self.face_model,
                self.renderer,
                self.light_renderer,
                mode=self.fit.texture,
                prior=self.fit.texture_prior,
                openings=self.openings,
            )
        return self._appearances[face]

    def _targets(self, data: ChunkFrames, face: int) -> torch.Tensor:
        return self._fitter(face).targets(data.landmarks, data.crop_from_frame, self.crop_size)

    def _inputs(
        self, data: ChunkFrames, rows: np.ndarray, *, small: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`frame_inputs` of chunk rows on the engine's device, at the render size or,
        ``small``, at the lights' size; rows without a face get black images and empty masks
        (no samples)."""
        renderer = self.light_renderer if small else self.renderer
        size = renderer.image_size[0]  # square
        images = torch.zeros(len(rows), 3, size, size)
        classes = torch.zeros(len(rows), size, size, dtype=torch.uint8)
        ok = np.flatnonzero(data.valid[rows])
        if ok.size:
            images[ok], classes[ok] = frame_inputs(
                data, rows[ok], crop_size=self.crop_size, size=size
            )
        return images.to(self.device), classes.to(self.device)

    def fit_shape(self, data: ChunkFrames, *, face: int = 0) -> None:
        """Fit the identity of face ``face`` on the valid frames of ``data``'s own rows, and
        estimate its texture coefficients on the same frames."""
        rows = np.arange(len(data.valid))[data.own]
        targets = self._targets(data, face)[rows].to(self.device)
        fitter = self._fitter(face)
        fitter.fit_shape(targets, data.valid[rows])
        app = self.appearance(face)
        if app is None or not app.estimates:
            return
        res, picked = fitter.shape_fit, rows[fitter.shape_rows]
        with torch.no_grad():
            vertices = self.face_model(
                shape=res.shape.expand(len(picked), -1),
                expression=res.expression,
                global_pose=res.global_pose,
                jaw_pose=res.jaw_pose,
            ).vertices
            app.estimate(vertices, res.cam, *self._inputs(data, picked, small=True))

    def predict(self, data: ChunkFrames, *, render: bool, face: int = 0) -> ChunkResult:
        """The chunk's own frames of face ``face`` (its identity fitted first)."""
        res = self._fitter(face).fit_chunk(
            self._targets(data, face).to(self.device), data.valid, data.own
        )
        n = len(res.cam)
        fm = self.face_model
        shape = res.shape.to(self.device).expand(n, -1)
        with torch.no_grad():
            mesh = fm(
                shape=shape,
                expression=res.expression,
                global_pose=res.global_pose,
                jaw_pose=res.jaw_pose,
            )
            points = mesh.landmarks_mp if mesh.landmarks_mp is not None else mesh.landmarks68
            landmarks = project_weak_perspective(points, res.cam)[..., :2]
            app = self.appearance(face)
            light = fit_light().to(self.device).expand(n, -1, -1)
            texture = res.cam.new_zeros(n, fm.num_texture)
            renders = None
            if app is not None:
                rows = np.arange(len(data.valid))[data.own]
                light, renders = self._frames(
                    data, rows, mesh.vertices, res.cam, app, render=render
                )
                texture = app.texture.to(res.cam).expand(n, -1)
        codes = {
            "shape": shape,
            "expression": res.expression,
            "global_pose": res.global_pose,
            "jaw_pose": res.jaw_pose,
            "pose": torch.cat([res.global_pose, res.jaw_pose], -1),
            "cam": res.cam,
            "light": light,
            "texture": texture,
            "fit_residual": res.residual,
        }
        result = ChunkResult(
            codes={k: _numpy(v) for k, v in codes.items()},
            vertices=mesh.vertices,
            landmarks=landmarks,
        )
        if app is not None and (fm.texture_mean is not None or app.extracts):
            result.texture_map = _numpy(app.texture_map()).transpose(1, 2, 0)
        result.pending_renders = renders
        return result

    def _frames(
        self,
        data: ChunkFrames,
        rows: np.ndarray,
        vertices: torch.Tensor,
        cam: torch.Tensor,
        app: ClipAppearance,
        *,
        render: bool,
    ) -> tuple[torch.Tensor, Callable[[], tuple[torch.Tensor, ...]] | None]:
        """Lights of the chunk rows ``rows`` (meshes ``vertices``, ``cam``), their texture-map
        contribution (``extract``) and, when asked, their renders, RENDER_BATCH frames at a time
        (the rasterizer's memory grows with the batch).

        Returns:
            light (n, 9, 3) and a function giving (image, alpha, shape image) (n, 3|1|3, R, R),
            or None. The renders of ``extract`` come with the texture map's contribution; the
            others are made when the function is called.
        """
        n = len(rows)
        light = fit_light().to(self.device).expand(n, -1, -1).clone()
        valid = torch.from_numpy(data.valid[rows]).to(self.device)
        parts = []
        for i in range(0, n, RENDER_BATCH):
            batch = slice(i, min(i + RENDER_BATCH, n))
            v, c = vertices[batch], cam[batch]
            if app.estimates:
                small = self._inputs(data, rows[batch], small=True)
                light[batch] = app.lights(v, c, *small, observe=valid[batch])
            if not app.extracts:
                continue
            out = app.untextured(v, c)
            app.accumulate(out, *self._inputs(data, rows[batch]), light[batch], keep=valid[batch])
            if render:
                colours = app.interior.colours()
                image, alpha = app.render(out, v, c, app.texture_map(), light[batch], colours)
                parts.append((image, alpha, self.renderer.shape_from(out)))
        if not render:
            return light, None
        if app.extracts:
            made = tuple(torch.cat([p[k] for p in parts]) for k in range(3))
            return light, lambda: made
        return light, functools.partial(
            self._renders,
            app,
            vertices,
            cam,
            app.texture_map(),
            light.clone(),
            app.interior.colours(),
        )

    def _renders(
        self,
        app: ClipAppearance,
        vertices: torch.Tensor,
        cam: torch.Tensor,
        texture: torch.Tensor,
        light: torch.Tensor,
        colours: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """(image, alpha, shape image) (n, 3|1|3, R, R) of n meshes with their lights (n, 9, 3),
        the albedo map ``texture`` (3, Huv, Wuv) and the openings' cell colours (C, 3),
        RENDER_BATCH frames at a time."""
        parts = []
        for i in range(0, len(cam), RENDER_BATCH):
            batch = slice(i, i + RENDER_BATCH)
            out = app.untextured(vertices[batch], cam[batch])
            image, alpha = app.render(
                out, vertices[batch], cam[batch], texture, light[batch], colours
            )
            parts.append((image, alpha, self.renderer.shape_from(out)))
        return tuple(torch.cat([p[k] for p in parts]) for k in range(3))

    def extracted_renders(
        self,
        data: ChunkFrames,
        vertices: torch.Tensor,
        cam: torch.Tensor,
        *,
        build: np.ndarray,
        face: int = 0,
    ) -> torch.Tensor:
        """Renders of a predicted chunk's own rows with a texture map extracted from the rows
        ``build`` only (evaluation scores a map on frames it was not built from).

        Each frame's light is solved again exactly as :meth:`predict` solves it; the map starts
        from the face's model albedo (:meth:`fit_shape` first).

        Args:
            data: the chunk :meth:`predict` was given.
            vertices: (n, V, 3) its own rows' meshes; cam: (n, 3) their cameras.
            build: (n,) bool, own rows the map is built from.
            face: the face.

        Returns:
            (n, 3, R, R) RGB renders (not clamped; black off the face).
        """
        app = self.appearance(face)
        if app is None or not app.estimates:
            raise ValueError(
                "extracted_renders needs a face model with UVs and texture "
                "estimation on (inference.fit.texture model or extract)"
            )
        rows = np.arange(len(data.valid))[data.own]
        keep = torch.from_numpy(np.asarray(build, bool) & data.valid[rows]).to(self.device)
        accumulator, lights = app.new_accumulator(), []
        seen = app.new_opening_colours()
        for i in range(0, len(rows), RENDER_BATCH):
            batch = slice(i, min(i + RENDER_BATCH, len(rows)))
            v, c = vertices[batch], cam[batch]
            small = self._inputs(data, rows[batch], small=True)
            lights.append(app.lights(v, c, *small, observe=keep[batch], colours=seen))
            app.accumulate(
                app.untextured(v, c),
                *self._inputs(data, rows[batch]),
                lights[-1],
                keep=keep[batch],
                accumulator=accumulator,
            )
        texture, light = accumulator.texture().clamp(0, 1), torch.cat(lights)
        colours = seen.colours()
        parts = []
        for i in range(0, len(rows), RENDER_BATCH):
            batch = slice(i, min(i + RENDER_BATCH, len(rows)))
            v, c = vertices[batch], cam[batch]
            out = app.untextured(v, c)
            parts.append(app.render(out, v, c, texture, light[batch], colours)[0])
        return torch.cat(parts)
