"""One face's appearance in fit mode: texture coefficients, per-frame light, the texture map.

``inference.fit.texture`` (:data:`TEXTURE_MODES`):

* ``model`` (default): the face model's texture coefficients are estimated once per face, from
  the frames its identity is fitted on (up to 8 frames among its first 64, with their per-frame
  fits), alternating with those frames' lights (:func:`~seqdeca.inference.appearance.
  estimate_texture`); then every frame's SH light is solved with that albedo fixed
  (:func:`~seqdeca.inference.appearance.robust_light`). Renders, OBJ textures and the rig use
  the albedo of those coefficients.
* ``extract``: as ``model``, plus a UV texture map unwrapped from every frame
  (:mod:`seqdeca.inference.texture_map`), holes filled with the model albedo; renders use the map
  accumulated so far, the OBJ texture and the rig the final one.
* ``mean``: no estimation (the model's mean albedo under a fixed soft light, :func:`fit_light`).

With ``model`` and ``extract`` renders also paint the mesh's openings (eyes, mouth of a model
without eyeballs or mouth interior) with colours learnt from the frames so far
(:mod:`seqdeca.inference.opening_colours`); ``mean`` leaves them black.

Coefficients and lights are solved on renders ``LIGHT_DOWNSCALE`` times smaller than
``render.image_size`` against the face crops resized to that size, with the 3-class mask of
their tracked landmarks (:func:`frame_inputs`); the overlay and the texture map use the render
size. A model without a texture space renders a constant 0.5 grey albedo and gets only its light
estimated.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from seqdeca.errors import UserError
from seqdeca.face_model.layer import FaceModel
from seqdeca.geometry.openings import MeshOpenings
from seqdeca.inference.appearance import (
    FaceSamples,
    estimate_texture,
    face_samples,
    robust_light,
    sample_maps,
)
from seqdeca.inference.opening_colours import OpeningColours
from seqdeca.inference.stream import ChunkFrames
from seqdeca.inference.texture_map import TextureAccumulator
from seqdeca.prep.crop import apply_transform, warp_to_crop
from seqdeca.prep.masks import FACE, region_masks
from seqdeca.render.openings import cell_openings, fill_openings, opening_cells
from seqdeca.render.renderer import Renderer, RenderOutput
from seqdeca.render.shading import sh_shading
from seqdeca.render.uv import sample_uv_texture

__all__ = [
    "LIGHT_DOWNSCALE",
    "TEXTURE_MODES",
    "ClipAppearance",
    "check_appearance",
    "check_texture_mode",
    "fit_light",
    "frame_inputs",
    "light_size",
    "textured",
]

TEXTURE_MODES = ("model", "extract", "mean")
GREY = 0.5  # albedo of a model without a texture space (the renderer's default)
#: Texture coefficients and lights are solved on renders this many times smaller than
#: ``render.image_size`` (75 pixels for 224: about 2500 face pixels per frame).
LIGHT_DOWNSCALE = 3


def light_size(render_size: int) -> int:
    """Side (pixels) of the renders the lights are solved on, for ``render.image_size``."""
    return max(16, round(render_size / LIGHT_DOWNSCALE))


def fit_light(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(9, 3) the fixed soft SH light: ambient 0.7 plus 0.3 from the camera side (``mean``
    mode's light, and the fallback before a face's lights are known)."""
    light = torch.zeros(9, 3, dtype=dtype)
    light[0] = 0.7 * (4 * np.pi) ** 0.5  # constant term / its SH constant
    light[3] = 0.3 / ((2 * np.pi / 3) * (3 / (4 * np.pi)) ** 0.5)  # z term / its constant
    return light


def check_texture_mode(mode: str) -> str:
    """``mode`` when it is one of :data:`TEXTURE_MODES`, else a one-line :class:`UserError`."""
    if mode not in TEXTURE_MODES:
        raise UserError(
            f"inference.fit.texture must be one of {', '.join(TEXTURE_MODES)}, got {mode!r}"
        )
    return mode


def check_appearance(texture: str, prior: float) -> str:
    """``texture`` (checked by :func:`check_texture_mode`) when ``prior`` > 0 too, else a
    one-line :class:`UserError` (``inference.fit.texture`` and ``texture_prior``)."""
    check_texture_mode(texture)
    if not prior > 0:
        raise UserError(f"inference.fit.texture_prior must be > 0, got {prior}")
    return texture


def frame_inputs(
    data: ChunkFrames, rows: np.ndarray, *, crop_size: int, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Face crops and their 3-class masks of some rows of a chunk, resized to ``size``.

    Args:
        data: the chunk (frames at the decode size, landmarks in original-frame pixels).
        rows: (m,) rows with a face.
        crop_size: crop side in pixels (``crop.size``).
        size: output side in pixels (the render size, or the lights' :func:`light_size`).

    Returns:
        images (m, 3, size, size) RGB in [0, 1] (resized with antialiasing) and classes
        (m, size, size) uint8 (nearest; 0 background, 1 skin, 2 eyes/brows/mouth; all 1 when
        the landmarks are not MediaPipe's 478).
    """
    mats = data.crop_from_frame[rows]
    crops = warp_to_crop(
        data.frames[rows], mats @ np.linalg.inv(data.decoded_from_original), crop_size
    )
    images = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    if data.landmarks.shape[1] >= 468:
        points = apply_transform(data.landmarks[rows][..., :2], mats)
        classes = np.stack([region_masks(p, crop_size) for p in points])
    else:
        classes = np.full((len(rows), crop_size, crop_size), FACE, np.uint8)
    classes = torch.from_numpy(classes)
    if crop_size != size:
        images = F.interpolate(
            images, size=size, mode="bilinear", antialias=True, align_corners=False
        )
        classes = F.interpolate(classes[:, None].float(), size=size, mode="nearest")[:, 0].to(
            torch.uint8
        )
    return images, classes


class ClipAppearance:
    """Appearance state of one face of a clip (module docstring).

    Args:
        face_model: the model (texture space, if any).
        renderer: a renderer of its topology at the render size (overlay, texture map).
        light_renderer: the same at the smaller size the lights are solved at
            (:func:`light_size`).
        mode: one of :data:`TEXTURE_MODES`.
        prior: ``inference.fit.texture_prior``.
        openings: the topology's openings, whose colours are learnt from the frames and
            painted into renders (not in ``mean`` mode); None: renders are black there.
    """

    def __init__(
        self,
        face_model: FaceModel,
        renderer: Renderer,
        light_renderer: Renderer,
        *,
        mode: str,
        prior: float,
        openings: MeshOpenings | None = None,
    ) -> None:
        self.renderer, self.light_renderer = renderer, light_renderer
        self.mode, self.prior = check_texture_mode(mode), float(prior)
        ref = renderer.uv_bary
        self.openings = openings if self.estimates and openings is not None else None
        if face_model.texture_mean is not None:
            self.mean = face_model.texture_mean.to(ref)
            self.basis = face_model.texture_basis.to(ref)
        else:
            self.mean = ref.new_full((3, *renderer.uv_size), GREY)
            self.basis = ref.new_zeros(0, 3, *renderer.uv_size)
        self.texture = ref.new_zeros(face_model.num_texture)
        self.albedo = self.mean  # the model albedo of ``texture`` (unclamped)
        self.fallback = fit_light().to(ref)
        self.accumulator: TextureAccumulator | None = None
        self.interior = self.new_opening_colours()  # the openings' colours so far

    @property
    def estimates(self) -> bool:
        """Whether texture and light are estimated (not ``mean`` mode)."""
        return self.mode != "mean"

    @property
    def extracts(self) -> bool:
        """Whether a texture map is extracted (``extract`` mode)."""
        return self.mode == "extract"

    def untextured(
        self, vertices: torch.Tensor, cam: torch.Tensor, *, small: bool = False
    ) -> RenderOutput:
        """Render (m, V, 3) meshes with cam (m, 3) (normals, UVs, coverage, z-buffer), at the
        render size or, ``small``, at the lights' size."""
        renderer = self.light_renderer if small else self.renderer
        screen, fragments = renderer.rasterize(vertices, cam)
        return renderer.shade(vertices, screen, fragments)

    def _samples(
        self, vertices: torch.Tensor, cam: torch.Tensor, images: torch.Tensor, classes: torch.Tensor
    ) -> tuple[RenderOutput, FaceSamples]:
        """The frames' untextured render at the lights' size and its face-skin samples."""
        out = self.untextured(vertices, cam, small=True)
        return out, face_samples(out, images.to(vertices), classes.to(vertices.device) == FACE)

    def estimate(
        self, vertices: torch.Tensor, cam: torch.Tensor, images: torch.Tensor, classes: torch.Tensor
    ) -> None:
        """Estimate the face's texture coefficients (and reference light) from a few frames.

        Args:
            vertices: (m, V, 3) the frames' meshes, metres; cam: (m, 3).
            images, classes: :func:`frame_inputs` of the frames at the lights' size.
        """
        _, samples = self._samples(vertices, cam, images, classes)
        fit = estimate_texture(
            samples, self.mean, self.basis, prior=self.prior, fallback=self.fallback
        )
        self.texture = fit.texture
        if self.basis.shape[0]:
            self.albedo = self.mean + torch.einsum("k,kchw->chw", fit.texture, self.basis)
        if bool(fit.light.ok.any()):
            self.fallback = fit.light.light[fit.light.ok].mean(0)
        if self.extracts:
            self.accumulator = self.new_accumulator()

    def lights(
        self,
        vertices: torch.Tensor,
        cam: torch.Tensor,
        images: torch.Tensor,
        classes: torch.Tensor,
        *,
        observe: torch.Tensor | None = None,
        colours: OpeningColours | None = None,
    ) -> torch.Tensor:
        """(m, 9, 3) the lights of a batch of frames, with the face's albedo fixed.

        Args:
            vertices: (m, V, 3); cam: (m, 3); images, classes: :func:`frame_inputs` at the
                lights' size.
            observe: (m,) bool, frames whose pixels seen through the openings are added to
                ``colours``, or None (nothing added).
            colours: the openings' colours to add to; None: the face's own (:attr:`interior`).
        """
        out, samples = self._samples(vertices, cam, images, classes)
        light = robust_light(
            samples, sample_maps(self.albedo, samples.uv), fallback=self.fallback
        ).light
        if observe is not None and self.openings is not None:
            cells = opening_cells(self.light_renderer, self.openings, vertices, cam, out.alpha)
            target = colours if colours is not None else self.interior
            target.add(cells, images.to(vertices), classes.to(vertices.device), light, observe)
        return light

    def new_opening_colours(self) -> OpeningColours:
        """Empty colours of the openings (evaluation learns them from chosen frames)."""
        if self.openings is None:
            return OpeningColours(torch.zeros(0, dtype=torch.int64, device=self.mean.device))
        return OpeningColours(cell_openings(self.openings).to(self.mean.device))

    def render(
        self,
        out: RenderOutput,
        vertices: torch.Tensor,
        cam: torch.Tensor,
        texture: torch.Tensor,
        light: torch.Tensor,
        colours: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The textured, lit render of :meth:`untextured` ``out`` (meshes ``vertices``
        (m, V, 3), ``cam`` (m, 3)) with its openings painted with ``colours`` (C, 3)
        (:meth:`OpeningColours.colours`, taken when the renders are asked for: they may be made
        later, in another thread).

        Returns:
            (m, 3, R, R) RGB (not clamped, black where nothing is painted) and (m, 1, R, R) its
            coverage: the face's, and the openings' where they are painted.
        """
        image = textured(out, texture, light)
        if self.openings is None:
            return image, out.alpha
        cells = opening_cells(self.renderer, self.openings, vertices, cam, out.alpha)
        painted = (cells >= 0)[:, None].to(out.alpha)
        return fill_openings(image, cells, colours, light), torch.maximum(out.alpha, painted)

    def accumulate(
        self,
        render: RenderOutput,
        images: torch.Tensor,
        classes: torch.Tensor,
        light: torch.Tensor,
        *,
        keep: torch.Tensor,
        accumulator: TextureAccumulator | None = None,
    ) -> None:
        """Add the frames ``keep`` ((m,) bool) of a batch to a texture map (``accumulator``,
        default the face's own; nothing without one).

        Args:
            render: :meth:`untextured` of the batch at the render size; images, classes: its
                :func:`frame_inputs` at that size; light: (m, 9, 3).
        """
        acc = accumulator if accumulator is not None else self.accumulator
        if acc is None or not bool(keep.any()):
            return
        acc.add(
            normals=render.normal_image[keep],
            uv=render.uv_image[keep],
            alpha=render.alpha[keep],
            images=images[keep].to(light),
            classes=classes[keep].to(light.device),
            light=light[keep],
        )

    def new_accumulator(self) -> TextureAccumulator:
        """An empty texture map filled with the face's model albedo (evaluation builds one from
        chosen frames)."""
        return TextureAccumulator(self.albedo_map())

    def albedo_map(self) -> torch.Tensor:
        """(3, Huv, Wuv) the face's model albedo in [0, 1]."""
        return self.albedo.clamp(0, 1)

    def texture_map(self) -> torch.Tensor:
        """(3, Huv, Wuv) the face's texture in [0, 1]: the extracted map so far in ``extract``
        mode, else the model albedo."""
        if self.accumulator is not None:
            return self.accumulator.texture().clamp(0, 1)
        return self.albedo_map()


def textured(render: RenderOutput, texture: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """The textured, lit image of an untextured render (what :meth:`Renderer.shade` composes
    with this albedo and light, over black).

    Args:
        render: :meth:`Renderer.shade` output without albedo or light.
        texture: (3, Huv, Wuv) albedo map in [0, 1].
        light: (m, 9, 3) SH light.

    Returns:
        (m, 3, H, W) RGB (not clamped).
    """
    m = light.shape[0]
    albedo = sample_uv_texture(texture.expand(m, -1, -1, -1), render.uv_image)
    return albedo * sh_shading(render.normal_image, light) * render.alpha
