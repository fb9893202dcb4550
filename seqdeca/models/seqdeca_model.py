"""The composed SeqDECA model: encoders, temporal fusion, AU head, detail stage, face model, renderer.

Data flow for B windows of T frames (docs/design.md, "The model"; N = B * T frames)::

    images (B,T,3,224,224) --coarse encoder--> codes (B,T,D) split by CodeLayout, features (B,T,2048)
                           --AU net---------> AU tokens (B,T,27,C), AU probabilities (B,T,41)
    [features, AU tokens, codes] --temporal fusion--> expression / jaw / light (B,T,...)
                                                      fused AU tokens --AU head--> (B,T,27) in [0,1]
    fused codes --face model--> vertices, landmarks --camera--> normalised image landmarks
                --renderer (albedo from texture codes, SH light)--> render (B,T,3,H,W)
    detail stage: images --detail encoder--> detail code (B,T,n_detail)
                  [jaw, expression, detail] + AU condition --generator--> UV displacement
                  --Renderer.detail_normal_map--> detail normals --SH light--> UV shading

Time is folded into the batch with einops ``(b t)`` for every per-frame network; only the
temporal fusion sees windows. ``encode``, ``fuse``, ``decode``, ``detail`` and ``forward`` return
the frozen dataclasses of :mod:`seqdeca.models.outputs` (:class:`Encoded`, :class:`Fused`,
:class:`Decoded`, :class:`DetailOutput`, :class:`SeqDECAOutput`); DDP finds the tensors inside
them (they are registered pytree nodes, so its output hooks see every tensor inside them as
well). The codes the model takes (``decode`` / ``detail`` inputs, ``coarse_codes``) stay
dicts keyed by code name. Which modules train is declared per stage by
:meth:`SeqDECA.trainable_modules`; :meth:`SeqDECA.set_stage` freezes the rest (``eval()`` and
``requires_grad=False``), and :meth:`SeqDECA.train` keeps frozen modules in eval mode.

With DECA's FLAME layout (100/50/50) the coarse encoder has DECA's 236 codes and the generator's
latent is DECA's 181 (jaw 3 + expression 50 + detail 128), so ``deca_model.tar`` imports. The
bundled face model has fewer expression components (24 at most): its generator latent is
3 + E + 128 and DECA's ``D_detail`` (and ``E_flame``) cannot be loaded into it; the builder refuses
such a combination with one line.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from seqdeca.au_names import AFFWILD2_AU_NAMES, MAIN_AU_NAMES
from seqdeca.face_model.layer import FaceModel, deca_pose_to_params
from seqdeca.geometry import project_weak_perspective, vertex_normals
from seqdeca.models.au_head import AUHead, select_affwild2
from seqdeca.models.au_net import AUNet
from seqdeca.models.coarse_encoder import CoarseEncoder
from seqdeca.models.code_layout import CodeLayout, framing_cam, neutral_light
from seqdeca.models.detail import DetailEncoder, DetailGenerator, detail_latent
from seqdeca.models.detail_path import flat_path_offset, photo_path
from seqdeca.models.outputs import (
    CODE_NAMES,
    Decoded,
    DetailOutput,
    Encoded,
    Fused,
    SeqDECAOutput,
)
from seqdeca.models.temporal_conv import TemporalConv
from seqdeca.models.temporal_fusion import TemporalFusion
from seqdeca.render.renderer import FACING_THRESHOLD, Renderer
from seqdeca.render.resize import resize_maps
from seqdeca.render.shading import sh_shading

STAGES = ("temporal", "detail")
#: AU condition of the detail generator and critic -> AU names of its channels (the critic sees
#: none with ``model.critic_au: false``, whatever the condition).
AU_CONDITIONS: dict[str, tuple[str, ...]] = {
    "au27": MAIN_AU_NAMES,
    "affwild12": AFFWILD2_AU_NAMES,
    "none": MAIN_AU_NAMES,  # the generator is unconditioned; the critic still sees the 27
}
#: Codes :meth:`SeqDECA.forward` accepts in place of the predicted ones (``coarse_codes=``): the
#: seven codes it decodes, :class:`SeqDECAOutput`'s top-level fields.
GIVEN_CODES = CODE_NAMES


def au_condition_names(condition: str) -> tuple[str, ...]:
    """AU names (channel order) of a ``detail_au_condition`` setting."""
    if condition not in AU_CONDITIONS:
        raise ValueError(
            f"unknown detail AU condition {condition!r}; choose one of {sorted(AU_CONDITIONS)}"
        )
    return AU_CONDITIONS[condition]


def _fold(x: torch.Tensor) -> torch.Tensor:
    """(B, T, ...) -> (B*T, ...)."""
    return rearrange(x, "b t ... -> (b t) ...")


def _unfold(x: torch.Tensor, b: int) -> torch.Tensor:
    """(B*T, ...) -> (B, T, ...)."""
    return rearrange(x, "(b t) ... -> b t ...", b=b)


def _frozen(module: nn.Module) -> bool:
    """True when no parameter of ``module`` requires a gradient."""
    return not any(p.requires_grad for p in module.parameters())


def _grad_context(module: nn.Module) -> contextlib.AbstractContextManager:
    """``no_grad`` around a frozen module (saves activations), a no-op otherwise."""
    return torch.no_grad() if _frozen(module) else contextlib.nullcontext()


class SeqDECA(nn.Module):
    """The whole network for windows of frames (see the module docstring for the data flow).

    Args:
        face_model: the FLAME-format layer; sizes the code layout.
        renderer: a renderer for ``face_model``'s topology.
        coarse_encoder: per-frame codes, ``n_codes == CodeLayout.for_face_model(...).total``.
        au_net: per-frame AU tokens and probabilities.
        temporal_fusion: the temporal model (``model.temporal``: the window transformer or the
            SPECTRE-style convolution; ``n_expression`` = the face model's E).
        au_head: AU intensities from the fused AU tokens.
        detail_encoder: per-frame detail code.
        detail_generator: UV displacement (``latent_dim = 3 + E + n_detail``).
        detail_au_condition: "au27", "affwild12" or "none" (the generator's AU condition).
        freeze_coarse: keep the coarse encoder frozen in the temporal stage.
        freeze_au_net: keep the AU net frozen in the temporal stage.
        use_temporal: False runs the fusion on T = 1 windows (the per-frame baseline).
        crop_scale: the crop scale of the input crops (``crop.scale``): the untrained coarse
            encoder then predicts the mean face framed like a prepared crop under neutral light
            (:meth:`CoarseEncoder.start_at`, :func:`framing_cam`); None keeps its random head.
            Loaded weights (DECA, seqdeca checkpoints) replace this start.
        encoder_size: > 0: the per-frame encoders (coarse, AU, detail encoder) see the crops
            resized to this side (antialiased), e.g. 64 for the ResNet-18 of CPU experiments;
            0: the crops as given. Rendering and losses keep the crops' own size.
        detail_encoder_size: the same for the detail encoder alone; None: ``encoder_size``
            (wrinkles a few pixels wide vanish at 64 px).
        detail_path_offset: the detail stage also measures, per frame, what rendering the face
            without detail at the photo's size and unwrapping it leaves in the photo's detail
            contrast (``DetailOutput.uv_path_offset``; the critic's real view subtracts it,
            :mod:`seqdeca.models.detail_path`). One more render per frame, no gradient.
    """

    def __init__(
        self,
        *,
        face_model: FaceModel,
        renderer: Renderer,
        coarse_encoder: CoarseEncoder,
        au_net: AUNet,
        temporal_fusion: TemporalFusion | TemporalConv,
        au_head: AUHead,
        detail_encoder: DetailEncoder,
        detail_generator: DetailGenerator,
        detail_au_condition: str = "au27",
        freeze_coarse: bool = True,
        freeze_au_net: bool = True,
        use_temporal: bool = True,
        crop_scale: float | None = 1.25,
        encoder_size: int = 0,
        detail_encoder_size: int | None = None,
        detail_path_offset: bool = False,
    ) -> None:
        super().__init__()
        self.detail_path_offset = detail_path_offset
        detail_encoder_size = encoder_size if detail_encoder_size is None else detail_encoder_size
        if encoder_size < 0 or detail_encoder_size < 0:
            raise ValueError(
                f"encoder_size and detail_encoder_size must be >= 0, got "
                f"{encoder_size}, {detail_encoder_size}"
            )
        self.encoder_size = encoder_size
        self.detail_encoder_size = detail_encoder_size
        self.layout = CodeLayout.for_face_model(
            face_model.num_shape, face_model.num_texture, face_model.num_expression
        )
        self.au_condition_names = au_condition_names(detail_au_condition)
        self.detail_au_condition = detail_au_condition
        _check_sizes(self.layout, coarse_encoder, temporal_fusion, detail_encoder, detail_generator)
        want_au = 0 if detail_au_condition == "none" else len(self.au_condition_names)
        if detail_generator.au_dim != want_au:
            raise ValueError(
                f"detail generator has au_dim={detail_generator.au_dim}; condition "
                f"{detail_au_condition!r} needs {want_au}"
            )
        self.face_model = face_model
        self.renderer = renderer
        self.coarse_encoder = coarse_encoder
        self.au_net = au_net
        self.temporal_fusion = temporal_fusion
        self.au_head = au_head
        self.detail_encoder = detail_encoder
        self.detail_generator = detail_generator
        self.freeze_coarse = freeze_coarse
        self.freeze_au_net = freeze_au_net
        self.use_temporal = use_temporal
        if crop_scale is not None:
            cam = framing_cam(face_model, crop_scale)
            coarse_encoder.start_at(self.layout.prior(cam=cam, light=neutral_light()))
        self.stage = "temporal"
        self.set_stage("temporal")

    # ------------------------------------------------------------------------------ stages

    def trainable_modules(self, stage: str) -> dict[str, nn.Module]:
        """The modules that train in ``stage`` (the critic is separate and not listed).

        temporal: temporal fusion and AU head, plus the coarse encoder / AU net when not frozen.
        detail: detail encoder and detail generator.
        """
        if stage == "temporal":
            names = ["temporal_fusion", "au_head"]
            names += [] if self.freeze_coarse else ["coarse_encoder"]
            names += [] if self.freeze_au_net else ["au_net"]
        elif stage == "detail":
            names = ["detail_encoder", "detail_generator"]
        else:
            raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
        return {name: getattr(self, name) for name in names}

    def trainable_parameters(self, stage: str) -> list[nn.Parameter]:
        """Parameters of :meth:`trainable_modules` (what the optimizer of ``stage`` receives)."""
        return [p for m in self.trainable_modules(stage).values() for p in m.parameters()]

    def set_stage(self, stage: str) -> None:
        """Freeze every child module not trained in ``stage`` (eval, no grad); unfreeze the rest."""
        trainable = self.trainable_modules(stage)
        self.stage = stage
        for name, module in self.named_children():
            module.requires_grad_(name in trainable)
        self.train(self.training)

    def train(self, mode: bool = True) -> SeqDECA:
        """Like ``nn.Module.train`` but modules frozen in the current stage stay in eval mode."""
        super().train(mode)
        trainable = self.trainable_modules(self.stage)
        for name, module in self.named_children():
            if name not in trainable:
                module.eval()
        return self

    # ----------------------------------------------------------------------------- encode

    def _encoder_input(self, flat: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """(N, 3, H, W) crops -> (N, 3, s, s) at ``size`` s (default ``encoder_size``; unchanged
        when 0 or equal)."""
        s = self.encoder_size if size is None else size
        return resize_maps(flat, (s, s), antialias=True) if s else flat

    def per_frame_codes(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The coarse encoder's codes alone (no AU net, no fusion), e.g. a frozen teacher's.

        Args:
            images: (B, T, 3, H, W) RGB in [0, 1].

        Returns:
            dict of (B, T, ...) :class:`CodeLayout` parts ("expression", "pose" (6), ...).
        """
        b = images.shape[0]
        codes = self.coarse_encoder(self._encoder_input(_fold(images))).codes
        return dict(self.layout.split(_unfold(codes, b)))

    def encode(self, images: torch.Tensor, valid: torch.Tensor | None = None) -> Encoded:
        """Per-frame codes, global features and AU outputs.

        Args:
            images: (B, T, 3, 224, 224) RGB in [0, 1] (no normalisation).
            valid: (B, T) bool, False on padding frames (returned unchanged; None = all valid).

        Returns:
            :class:`Encoded` of (B, T, ...) tensors: the code vector, every CodeLayout part, the
            global features, AU tokens and probabilities, and ``valid``.
        """
        b, t = images.shape[:2]
        flat = self._encoder_input(_fold(images))  # (N, 3, H, W)
        with _grad_context(self.coarse_encoder):
            coarse = self.coarse_encoder(flat)
        with _grad_context(self.au_net):
            au = self.au_net(flat)
        codes = _unfold(coarse.codes, b)
        if valid is None:
            valid = torch.ones(b, t, dtype=torch.bool, device=images.device)
        return Encoded(
            codes=codes,
            **self.layout.split(codes),
            global_features=_unfold(coarse.features, b),
            au_tokens=_unfold(au.au_tokens, b),
            au_probabilities=_unfold(au.probabilities, b),
            valid=valid.to(device=images.device, dtype=torch.bool),
        )

    # ------------------------------------------------------------------------------- fuse

    def fuse(self, encoded: Encoded, *, per_frame: bool | None = None) -> Fused:
        """Temporal fusion and AU head.

        Args:
            encoded: :meth:`encode` output.
            per_frame: run the fusion on T = 1 windows (default: ``not use_temporal``).

        Returns:
            :class:`Fused` of (B, T, ...): expression, jaw pose, pose (global from the coarse
            encoder + fused jaw), light, residual and the AU head's intensities.
        """
        per_frame = (not self.use_temporal) if per_frame is None else per_frame
        b = encoded.valid.shape[0]
        inputs = (encoded.global_features, encoded.au_tokens)
        codes = {k: getattr(encoded, k) for k in ("expression", "pose", "light")}
        valid = encoded.valid
        if per_frame:  # every frame its own window: (B, T, ...) -> (B*T, 1, ...)
            inputs = tuple(rearrange(x, "b t ... -> (b t) 1 ...") for x in inputs)
            codes = {k: rearrange(v, "b t ... -> (b t) 1 ...") for k, v in codes.items()}
            valid = rearrange(valid, "b t -> (b t) 1")
        fusion = self.temporal_fusion(*inputs, codes, valid)
        out = Fused(
            expression=fusion.expression,
            jaw_pose=fusion.jaw_pose,
            pose=fusion.pose,
            light=fusion.light,
            residual=fusion.residual,
            au_intensities=self.au_head(fusion.au_tokens),
        )
        if per_frame:
            out = out.map_tensors(lambda v: rearrange(v, "(b t) 1 ... -> b t ...", b=b))
        return out

    # ----------------------------------------------------------------------------- decode

    def decode(self, codes: dict[str, torch.Tensor], *, render_shape: bool = False) -> Decoded:
        """Face model, projected landmarks and the textured, lit render.

        Args:
            codes: (B, T, ...) "shape", "texture", "expression", "pose" (6), "cam" (3),
                "light" (9, 3) (other keys are ignored).
            render_shape: also render ``shape_image`` (grey shape render, no gradient).

        Returns:
            :class:`Decoded` of (B, T, ...): vertices, landmarks (None for a set the face model
            lacks), render and coverage, UV albedo (None without a texture space) and, with
            ``render_shape``, the shape image.
        """
        b = codes["pose"].shape[0]
        params = deca_pose_to_params(
            codes["pose"], shape=codes["shape"], expression=codes["expression"]
        )
        mesh = self.face_model(params)
        vertices, cam = _fold(mesh.vertices), _fold(codes["cam"])  # (N, V, 3), (N, 3)

        def project(points: torch.Tensor | None) -> torch.Tensor | None:  # (B, T, L, 3) -> (.., 2)
            if points is None:
                return None
            return _unfold(project_weak_perspective(_fold(points), cam)[..., :2], b)

        # the order of the operations is kept: it fixes the order of the gradient sums
        landmarks68, landmarks_mp = project(mesh.landmarks68), project(mesh.landmarks_mp)
        albedo = uv_albedo = None
        if self.face_model.texture_mean is not None and codes["texture"].shape[-1] > 0:
            albedo = self.face_model.albedo(_fold(codes["texture"]))  # (N, 3, Ht, Wt)
            uv_albedo = _unfold(albedo, b)
        rendered = self.renderer(vertices, cam, light=_fold(codes["light"]), albedo=albedo)
        image, alpha = _unfold(rendered.image, b), _unfold(rendered.alpha, b)
        shape_image = self.renderer.render_shape(vertices, cam) if render_shape else None
        return Decoded(
            vertices=mesh.vertices,
            landmarks68=landmarks68,
            landmarks_mp=landmarks_mp,
            render=image,
            render_mask=alpha,
            albedo=uv_albedo,
            shape_image=None if shape_image is None else _unfold(shape_image, b),
        )

    def render_au(self, images: torch.Tensor, decoded: Decoded) -> torch.Tensor:
        """AU-net probabilities of the render pasted over the input (the ``au_render`` term).

        The render and its coverage are resized to the input size and composited over the input
        image, so the AU net sees the same context and differs only where the face model is
        drawn. The AU net runs in its current mode (frozen: eval, no parameter gradients) but
        gradients flow through it into the render.

        Args:
            images: (B, T, 3, H, W) RGB in [0, 1].
            decoded: :meth:`decode` outputs (render (B, T, 3, h, w) and its coverage).

        Returns:
            (B, T, 41) AU probabilities in [0, 1] (cosine similarities, as "au_probabilities").
        """
        b = images.shape[0]
        flat = _fold(images)
        size = tuple(flat.shape[-2:])
        render = resize_maps(_fold(decoded.render), size)
        alpha = resize_maps(_fold(decoded.render_mask), size).clamp(0, 1)
        composite = alpha * render + (1 - alpha) * flat
        return _unfold(self.au_net(composite).probabilities, b)

    # ----------------------------------------------------------------------------- detail

    def au_condition(self, au_intensities: torch.Tensor) -> torch.Tensor:
        """(..., 27) AU-head intensities -> the detail condition (..., K), K = 27 or 12."""
        if self.detail_au_condition == "affwild12":
            return select_affwild2(au_intensities)
        return au_intensities

    def detail(
        self,
        images: torch.Tensor,
        codes: dict[str, torch.Tensor],
        vertices: torch.Tensor,
        albedo: torch.Tensor | None = None,
    ) -> DetailOutput:
        """The detail stage for a window: detail code, displacement, normals and UV shading.

        Args:
            images: (B, T, 3, 224, 224) RGB in [0, 1].
            codes: (B, T, ...) "jaw_pose" (3), "expression" (E), "light" (9, 3),
                "au_intensities" (27), "cam" (3).
            vertices: (B, T, V, 3) coarse vertices (metres).
            albedo: (B, T, 3, Ht, Wt) UV albedo (``Decoded.albedo``), or None (grey); used only
                for ``uv_path_offset``.

        Returns:
            :class:`DetailOutput` of (B, T, ...): detail code; AU condition in [0, 1] (the
            generator's, or the 27 intensities the critic sees when it is "none"; the critic
            ignores it with ``model.critic_au`` false); UV displacement (metres), detail
            normals and their SH shading; the coarse normals' shading under the same light (no
            gradient); the input image sampled into UV through the coarse mesh (for the UV
            photometric loss); the visible mask: the face-and-eye UV mask times the texels whose
            coarse normal faces the camera (DECA's ``pos_mask`` rule; elsewhere ``uv_input``
            shows whatever occludes the texel or the background).
        """
        b = images.shape[0]
        flat_images = _fold(images)
        detail_input = self._encoder_input(flat_images, self.detail_encoder_size)
        detail_code = self.detail_encoder(detail_input).codes  # (N, n_detail)
        latent = detail_latent(_fold(codes["jaw_pose"]), _fold(codes["expression"]), detail_code)
        condition = self.au_condition(_fold(codes["au_intensities"]))
        generated = self.detail_generator(
            latent, None if self.detail_au_condition == "none" else condition
        )  # (N, 1, 256, 256)
        uv_size = self.renderer.uv_size
        displacement = resize_maps(generated, uv_size)
        vertices_n = _fold(vertices)
        normals = self.renderer.detail_normal_map(
            displacement, vertices_n, self.uv_detail_mask(displacement), self._fixed_displacement()
        )
        screen = project_weak_perspective(vertices_n, _fold(codes["cam"]))
        uv_screen = self.renderer.world2uv(screen)[:, :2].permute(0, 2, 3, 1)  # (N, Huv, Wuv, 2)
        uv_input = F.grid_sample(flat_images, uv_screen, mode="bilinear", align_corners=False)
        light = _fold(codes["light"])
        with torch.no_grad():  # coarse normals in UV: camera-facing texels and coarse shading
            coarse = self.renderer.world2uv(vertex_normals(vertices_n, self.renderer.faces))
            coarse = F.normalize(coarse, dim=1)  # zeros outside the UV layout stay zero
            visible = (coarse[:, 2:3] > -FACING_THRESHOLD).to(displacement.dtype)
            visible = visible * self.uv_detail_mask(displacement)
            coarse_shading = sh_shading(coarse, light.detach())
        path_offset = None
        if self.detail_path_offset:
            path_offset = self._path_offset(
                flat_images, vertices_n, codes, albedo, coarse_shading, visible
            )
        out = DetailOutput(
            detail_code=detail_code,
            au_condition=condition,
            displacement=displacement,
            detail_normals=normals,
            uv_shading=sh_shading(normals, light),
            uv_coarse_shading=coarse_shading,
            uv_input=uv_input,
            uv_visible_mask=visible,
            uv_path_offset=path_offset,
        )
        return out.map_tensors(lambda v: _unfold(v, b))

    def _path_offset(
        self,
        images: torch.Tensor,
        vertices: torch.Tensor,
        codes: dict[str, torch.Tensor],
        albedo: torch.Tensor | None,
        coarse_shading: torch.Tensor,
        visible: torch.Tensor,
    ) -> torch.Tensor:
        """(N, 1, Huv, Wuv) :func:`~seqdeca.models.detail_path.flat_path_offset` of the frames:
        ``images`` (N, 3, H, W), ``vertices`` (N, V, 3), (B, T, ...) ``codes`` "cam" and
        "light", (B, T, 3, Ht, Wt) ``albedo`` or None."""
        light = _fold(codes["light"]).detach()
        texture = None if albedo is None else _fold(albedo).detach()
        path = photo_path(self.renderer, vertices, _fold(codes["cam"]), tuple(images.shape[-2:]))
        return flat_path_offset(
            self.renderer,
            path,
            vertices=vertices.detach(),
            light=light,
            texture=None if texture is None else texture.clamp(0, 1),
            photo=images,
            albedo=texture,
            coarse_shading=coarse_shading,
            mask=visible,
            uv_mask=self.uv_detail_mask(visible),
            fixed_displacement=self._fixed_displacement(),
        )

    def uv_detail_mask(self, like: torch.Tensor) -> torch.Tensor:
        """(Huv, Wuv) face-and-eye UV mask (face mask, else the UV layout's coverage)."""
        mask = self.face_model.uv_face_eye_mask
        if mask is None:
            mask = self.face_model.uv_face_mask
        if mask is None:
            return self.renderer.uv_mask[0, 0].to(like)
        return resize_maps(mask.to(like)[None], self.renderer.uv_size)[0]  # (H, W) as (1, H, W)

    def _fixed_displacement(self) -> torch.Tensor | None:
        fixed = self.face_model.fixed_displacement
        return None if fixed is None else resize_maps(fixed[None], self.renderer.uv_size)[0]

    # ---------------------------------------------------------------------------- forward

    def forward(
        self,
        images: torch.Tensor,
        valid: torch.Tensor | None = None,
        stage: str = "temporal",
        *,
        per_frame: bool | None = None,
        render_shape: bool = False,
        au_render: bool = False,
        coarse_codes: dict[str, torch.Tensor] | None = None,
        condition_au: torch.Tensor | None = None,
    ) -> SeqDECAOutput:
        """Run one stage on B windows of T frames.

        Args:
            images: (B, T, 3, 224, 224) RGB in [0, 1].
            valid: (B, T) bool, False on padding frames (None = all valid).
            stage: "temporal" or "detail" (the detail stage also runs everything before it).
            per_frame: fusion on T = 1 windows (default: ``not use_temporal``).
            render_shape: render ``decoded.shape_image`` (visualisation).
            au_render: fill ``render_au_probabilities`` (41), :meth:`render_au` (computed inside
                ``forward`` so that DDP sees the AU net's use).
            coarse_codes: (B, T, ...) codes that replace the encoder's and the temporal model's for
                decoding and the detail stage, any of :data:`GIVEN_CODES` with the predicted
                code's shape (e.g. the ground truth of synthetic clips; "pose" and "jaw_pose"
                are the caller's to keep consistent).
            condition_au: (B, T, 27) AU intensities in [0, 1] that replace the AU head's as the
                detail stage's condition (e.g. the ground truth); ``fused.au_intensities``
                stays the head's.

        Returns:
            :class:`SeqDECAOutput` of (B, T, ...) tensors: the decoded codes (fused, or
            given), the :meth:`encode`, :meth:`fuse` and :meth:`decode` outputs, and in the
            detail stage the :meth:`detail` outputs.
        """
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
        encoded = self.encode(images, valid)
        fused = self.fuse(encoded, per_frame=per_frame)
        codes = decoded_codes(encoded, fused)
        if coarse_codes:
            codes |= _checked_codes(coarse_codes, codes)
        decoded = self.decode(codes, render_shape=render_shape)
        render_au = self.render_au(images, decoded) if au_render else None
        detail = None
        if stage == "detail":
            au = fused.au_intensities
            if condition_au is not None:
                _check_same_shape("condition_au", condition_au, au)
                au = condition_au.to(au.device)
            detail = self.detail(
                images, codes | {"au_intensities": au}, decoded.vertices, decoded.albedo
            )
        return SeqDECAOutput(
            **codes,
            encoded=encoded,
            fused=fused,
            decoded=decoded,
            detail=detail,
            render_au_probabilities=render_au,
        )


def decoded_codes(encoded: Encoded, fused: Fused) -> dict[str, torch.Tensor]:
    """The seven codes :meth:`SeqDECA.decode` renders (:data:`GIVEN_CODES`): shape, texture and
    cam of the coarse encoder, expression, pose, jaw pose and light of the temporal model."""
    return {
        "shape": encoded.shape,
        "texture": encoded.texture,
        "expression": fused.expression,
        "pose": fused.pose,
        "jaw_pose": fused.jaw_pose,
        "cam": encoded.cam,
        "light": fused.light,
    }


def _check_same_shape(name: str, given: torch.Tensor, predicted: torch.Tensor) -> None:
    if given.shape != predicted.shape:
        raise ValueError(
            f"given {name} {tuple(given.shape)} does not match the model's {tuple(predicted.shape)}"
        )


def _checked_codes(
    given: dict[str, torch.Tensor], predicted: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``given`` codes (:data:`GIVEN_CODES`) on the predicted codes' device, in their own dtype
    (float32 truth stays float32 under autocast); one-line errors for another name or shape."""
    unknown = sorted(set(given) - set(GIVEN_CODES))
    if unknown:
        raise ValueError(f"coarse_codes {unknown} are not codes; give any of {GIVEN_CODES}")
    for name, value in given.items():
        _check_same_shape(name, value, predicted[name])
    return {k: v.to(predicted[k].device) for k, v in given.items()}


def _check_sizes(
    layout: CodeLayout,
    coarse_encoder: CoarseEncoder,
    temporal_fusion: TemporalFusion | TemporalConv,
    detail_encoder: DetailEncoder,
    detail_generator: DetailGenerator,
) -> None:
    """One-line errors when the modules do not fit the face model's code layout."""
    if coarse_encoder.n_codes != layout.total:
        raise ValueError(
            f"coarse encoder predicts {coarse_encoder.n_codes} codes; the face model's layout "
            f"{layout.sizes} needs {layout.total}"
        )
    if temporal_fusion.n_expression != layout.n_expression:
        raise ValueError(
            f"temporal fusion has {temporal_fusion.n_expression} expression coefficients, the "
            f"face model {layout.n_expression}"
        )
    latent = 3 + layout.n_expression + detail_encoder.n_codes
    if detail_generator.latent_dim != latent:
        raise ValueError(
            f"detail generator latent_dim={detail_generator.latent_dim}; jaw 3 + expression "
            f"{layout.n_expression} + detail {detail_encoder.n_codes} = {latent}"
        )
