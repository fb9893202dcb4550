"""The typed configuration schema: the single source of truth for every setting.

YAML files in ``configs/`` hold only overrides of these defaults. A path may be written as
``${oc.env:SEQDECA_ASSETS}/generic_model.pkl`` (OmegaConf's environment resolver) so that no
committed file names one machine's disks. Sections are added by the issues that need them; every
key here is read somewhere in the code (``tests/test_config.py`` checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FaceModelConfig:
    """Which face model to use and its side files (empty string = not given).

    ``path`` empty selects the bundled default model; otherwise a FLAME ``generic_model.pkl``
    (2020 or 2023) or a seqdeca ``.npz``. The side files are DECA's and FLAME's official assets.
    """

    path: str = ""
    landmark_embedding: str = ""  # DECA landmark_embedding.npy
    mediapipe_embedding: str = ""  # FLAME mediapipe_landmark_embedding.npz
    head_template: str = ""  # DECA head_template.obj (UV layout)
    uv_face_mask: str = ""  # DECA uv_face_mask.png
    uv_face_eye_mask: str = ""  # DECA uv_face_eye_mask.png
    fixed_displacement: str = ""  # DECA fixed_displacement_256.npy
    texture: str = ""  # FLAME_albedo_from_BFM.npz or FLAME_texture.npz
    n_shape: int = 100  # identity components used (truncated to what the model has)
    n_expression: int = 50
    n_texture: int = 50


@dataclass
class RenderConfig:
    """Renderer settings."""

    image_size: int = 224
    uv_size: int = 256
    backend: str = "builtin"  # "builtin" (pure PyTorch) or "pytorch3d" (if the user installed it)


@dataclass
class CropConfig:
    """The ONE face crop shared by data preparation and inference (DECA-style box)."""

    size: int = 224  # output crop, pixels (square)
    scale: float = 1.25  # crop side = scale * 1.1 * mean(landmark box width, height), as DECA
    smooth_frames: int = 9  # temporal smoothing window of box centre/size (odd; 1 = off)


@dataclass
class TrackConfig:
    """MediaPipe face tracking."""

    max_side: int = 960  # frames are downscaled so that the long side is at most this
    max_gap: int = 5  # frames without a face up to this long are interpolated, longer = invalid
    min_detection_confidence: float = 0.5


@dataclass
class PrepareConfig:
    """Dataset preparation into prepared clip folders (tools/prepare_data.py)."""

    jpeg_quality: int = 95
    chunk_frames: int = 64  # frames decoded and processed at a time (memory bound)


@dataclass
class AugmentationConfig:
    """Window-consistent augmentation (the same draw for every frame of a window), and
    per-frame corruptions of the input (``corruption``: :mod:`seqdeca.data.corrupt_crops`)."""

    flip_prob: float = 0.5
    max_rotation_deg: float = 15.0
    scale_jitter: float = 0.1  # relative
    shift_jitter: float = 0.05  # fraction of the crop size
    color_jitter: float = 0.1  # brightness/contrast/saturation amplitude
    # on-the-fly corruptions of the input crops (occluders, blur, noise, JPEG, flicker) at this
    # multiple of the realistic mix (1: about one frame in four); targets keep the clean crops
    corruption: float = 0.0


@dataclass
class DataSourceConfig:
    """One folder of prepared clips and its share of the training mix."""

    root: str = ""
    weight: float = 1.0
    manifest: str = ""  # optional split manifest (clip ids, one per line); empty = every clip


@dataclass
class DataConfig:
    """Prepared data and window sampling."""

    sources: list[DataSourceConfig] = field(default_factory=list)
    # T, consecutive valid frames per sample: odd (the predicted frame is the centre). Training
    # draws one odd length per batch from min_window..window (0 = window only); the export
    # records the range and inference refuses a longer window.
    window: int = 3
    min_window: int = 0
    frame_mask_prob: float = 0.1  # training: share of non-centre frames marked as padding
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    batch_size: int = 4
    num_workers: int = 0
    val_sources: list[DataSourceConfig] = field(default_factory=list)  # held-out validation clips


@dataclass
class LossConfig:
    """Loss weights (a term is on when its weight is > 0) and the files optional terms need.

    Defaults follow DECA (coarse and detail) and GANimation / WGAN-GP (critic).
    """

    # coarse stage
    landmark: float = 1.0  # weighted L1 on the 68 landmarks (DECA's weights; jaw: below)
    # how the data's 68 landmarks were made: "mediapipe" (prepared clips: jaw points are surface
    # points) or "detector" (a 2D silhouette detector such as FAN: DECA's weights exactly)
    landmark_source: str = "mediapipe"
    contour_weight: float = -1.0  # weight of each jaw point 0-16; -1 = the source's profile
    landmark_mediapipe: float = 0.0  # L1 on the MediaPipe landmark set
    eye_closure: float = 1.0
    lip_closure: float = 0.5
    photometric: float = 2.0  # masked L1 with the 3-class masks
    important_region_weight: float = 2.0  # photometric weight of mask class 2 relative to 1
    identity: float = 0.0  # needs identity_weights (VGGFace2)
    shape_reg: float = 1e-4
    expression_reg: float = 1e-4
    texture_reg: float = 1e-4
    light_reg: float = 1.0
    jaw_reg: float = 0.0
    # L2 on the temporal model's residual (expression, jaw, light): the per-frame encoder's codes
    # are the prior of the fused ones, as the mean face is the prior of expression_reg
    residual_reg: float = 0.0
    # fused expression and jaw on corrupted input (data.augmentation.corruption) vs the frozen
    # per-frame encoder's on the clean crops: self-supervised, it teaches the temporal model to
    # repair a bad frame from its neighbours
    clean_consistency: float = 0.0
    # the teacher's codes averaged 1-2-1 over each frame's window neighbours (asks for smoothness)
    clean_consistency_smooth: bool = False
    temporal: float = 0.0  # smoothness of fused codes within the window
    au_label: float = 1.0  # AU head vs labels / proxies
    au_render: float = 0.0  # AU net on the render vs on the input
    # ground truth of synthetic clips (gt.npz): the coarse encoder's and the fused codes
    # and the AU net's 27 outputs against the truth (refused on data without gt.npz)
    code_supervision: float = 0.0
    au_supervision: float = 0.0
    au_head_supervision: float = 0.0  # the AU head's 27 intensities (the detail condition) too
    # detail stage
    detail_photometric: float = 2.0
    # L1 between the detail shading contrast of the generated map and the one observed in the
    # photo (the quantities the critic compares: smooth coarse-stage errors divide out)
    detail_contrast: float = 0.0
    # texels of that contrast the critic sees: "visible" (the visible face texels) or "compared"
    # (also away from borders and albedo edges, as the detail_contrast term)
    critic_region: str = "visible"
    id_mrf: float = 0.0  # needs id_mrf_weights (VGG19)
    z_reg: float = 5e-3
    z_diff: float = 5e-3
    z_sym: float = 5e-3
    # where z_sym compares the displacement with its mirror: "face" (mean over the UV face mask)
    # or "invisible" (DECA's: summed over the texels NOT visible, 1 - eroded visibility mask).
    # "face": with "invisible" the detail experiment's generator stayed at the flat map (its AU
    # control below the shuffled-condition level; docs/detail_evidence.md)
    z_sym_region: str = "face"
    # generator's adversarial term; 0 = no critic at all (DECA's detail training: no critic,
    # critic optimizer or critic steps; n_critic, critic_lr, gradient_penalty, au_regression unused)
    adversarial: float = 1.0
    # GANimation's AU regression with the critic's AU head (critic on real, generator on fake):
    # weight of the MSE averaged over samples and AUs. GANimation's value: it multiplies that
    # same mean by lambda_D_cond / batch = 4000 / 25 = 160. The detail experiment agrees (160
    # beat 1 on displacement error and AU control: docs/detail_evidence.md)
    au_regression: float = 160.0
    gradient_penalty: float = 10.0  # lambda_gp of the critic (any gan_type; 0 = off)
    # detail critic / generator adversarial loss: "wgan", "hinge" or "bce" (non-saturating)
    gan_type: str = "wgan"
    # weight files for the optional terms
    identity_weights: str = ""
    id_mrf_weights: str = ""


@dataclass
class ModelConfig:
    """The composed network (:func:`seqdeca.models.from_config.build_model`).

    ``backbone="resnet50"`` is DECA-compatible (224x224 input only); ``"resnet18"`` is a real
    architecture for CPU-sized experiments at small crops; ``"tiny"`` is for tests and smoke runs. A DECA ``deca_model.tar`` fits only a face model with DECA's 100 shape / 50 texture
    / 50 expression components (FLAME); OpenGraphAU checkpoints need ``au_backbone="resnet50"``
    and the checkpoint's graph stage in ``au_stage``.
    """

    backbone: str = "resnet50"  # coarse and detail encoders: "resnet50", "resnet18" or "tiny"
    au_backbone: str = "resnet50"  # AU net trunk: "resnet50", "resnet18" or "tiny"
    au_stage: int = 1  # OpenGraphAU graph stage (1 or 2) of the AU net
    # > 0: the per-frame encoders see the crops resized to this side (e.g. 64 for resnet18 on
    # a CPU); 0: as prepared (224, which resnet50 requires)
    encoder_size: int = 0
    # the same for the detail encoder alone (0: as prepared); -1: encoder_size
    detail_encoder_size: int = -1
    # temporal model: "transformer" (window transformer over global, AU and code tokens) or
    # "conv" (SPECTRE-style 1D convolution over time, residual on expression and jaw)
    temporal: str = "transformer"
    fusion_dim: int = 256  # temporal fusion transformer width (conv: channels)
    fusion_depth: int = 4
    fusion_heads: int = 8
    fusion_au_tokens: bool = True  # transformer: attend to the AU tokens (False: ablation)
    # transformer: also pull each frame's codes towards its neighbours' with weights and a gate
    # read from the transformer's outputs (seqdeca/models/code_mixing.py)
    fusion_code_mixing: bool = False
    conv_kernel: int = 5  # conv: temporal kernel size (odd; SPECTRE: 5)
    max_frames: int = 32  # longest window the temporal fusion accepts
    n_detail: int = 128  # detail code size (DECA: 128)
    # the generator's AU condition (entering as detail_au_form says): "au27", "affwild12" or
    # "none" (unconditioned); the critic's AU channels follow it ("none": the 27) unless
    # critic_au is false
    detail_au_condition: str = "au27"
    # how the condition enters the generator: "film" (FiLM of its blocks' features) or "linear"
    # (one map per AU from the last block, weighted by the condition and added to DECA's map:
    # the wrinkles' depth follows their AUs; seqdeca/models/detail.py)
    detail_au_form: str = "film"
    # detail stage: subtract from the photo's detail contrast what rendering the frame without
    # detail at the photo's size and unwrapping it to UV leaves there (texel-scale patterns the
    # generated detail, shaded in UV, cannot have): one more render per frame, no gradient
    # (seqdeca/models/detail_path.py)
    detail_path_offset: bool = False
    # detail critic: AU heatmap input channels and GANimation's AU-regression head; false: neither
    # (no au_regression terms), whatever the generator's condition
    critic_au: bool = True
    # side of the generator's displacement map (a multiple of 32; DECA: 256, the only size its
    # weights fit); resized to render.uv_size. Smaller sizes keep every block (CPU experiments)
    detail_uv_size: int = 256
    # bound of the generator's displacement (tanh x this, face-model units: metres for FLAME;
    # DECA: 0.01)
    detail_max_displacement: float = 0.01
    critic_width: int = 64  # detail critic: channels of its first convolution, doubled per layer
    deca_checkpoint: str = ""  # DECA deca_model.tar (E_flame, E_detail, D_detail); "" = none
    au_checkpoint: str = ""  # OpenGraphAU .pth for the AU net; "" = none
    freeze_coarse: bool = True  # coarse encoder frozen in the temporal stage
    freeze_au_net: bool = True  # AU net frozen in the temporal stage
    use_temporal: bool = True  # False: fusion runs on T=1 windows (per-frame baseline)


@dataclass
class RunConfig:
    """Where a run writes and how it is seeded."""

    output_dir: str = "outputs/run"
    seed: int = 0
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", ...


@dataclass
class TrainConfig:
    """Training loop (:func:`seqdeca.train.loop.train`); one optimizer step = ``grad_accum`` batches."""

    stage: str = "temporal"  # "temporal" (fusion + AU head) or "detail" (detail cGAN)
    max_steps: int = 1000  # optimizer steps (skipped non-finite steps count)
    lr: float = 1e-4  # learning rate after warm-up (temporal: AdamW; detail: the generator's Adam)
    weight_decay: float = 1e-4
    warmup_steps: int = 0  # linear learning-rate warm-up from 0
    grad_clip: float = 1.0  # max gradient norm; 0 = no clipping
    grad_accum: int = 1  # batches per optimizer step
    mixed_precision: str = "no"  # "no", "fp16" or "bf16" (GPU)
    checkpoint_every: int = 500  # steps between save_state checkpoints; 0 = only at the end
    keep_checkpoints: int = 3  # newest checkpoints kept
    log_every: int = 10  # steps between TensorBoard scalar writes
    max_bad_steps: int = 5  # consecutive non-finite steps before training stops
    # consecutive unreadable training windows (cut JPEG, missing mask, cut .npy; each skipped,
    # logged and counted) before training stops
    max_bad_samples: int = 20
    n_critic: int = 5  # detail stage: critic optimizer steps per generator step (GANimation)
    critic_lr: float = 1e-4  # detail stage: the critic's Adam learning rate (constant)
    gan_beta1: float = 0.5  # detail stage: Adam betas of generator and critic (GANimation)
    gan_beta2: float = 0.999
    # detail stage: the coarse codes it renders with: "encoder" (the frozen coarse encoder and
    # temporal model) or "ground_truth" (gt.npz of synthetic clips: shape, expression, pose,
    # cam, light, texture)
    detail_coarse: str = "encoder"
    # detail stage: the AU condition of generator and critic: "head" (the frozen AU head) or
    # "ground_truth" (gt.npz au_intensity)
    detail_condition: str = "head"
    validate_every: int = 0  # steps between validations on data.val_sources; 0 = off
    val_windows: int = 64  # held-out windows per validation (evenly spread, fixed)
    images_every: int = 0  # steps between TensorBoard image grids; 0 = off
    init_from: str = ""  # model.pt whose weights start the run (e.g. temporal -> detail); "" = none
    # the top-level modules taken from init_from (e.g. [coarse_encoder, au_net]: pretrained
    # encoders under a new temporal model); empty = every weight
    init_modules: list[str] = field(default_factory=list)


@dataclass
class FitConfig:
    """Landmark fitting of the face model (video2mesh/evaluate ``fit`` mode)."""

    shape_prior: float = 1e-5
    expression_prior: float = 1e-5
    jaw_prior: float = 1e-5
    smoothness: float = 0.01  # first-difference temporal weight inside each window (0: per frame)
    iterations: int = 10  # Levenberg-Marquardt iterations (per frame; most converge in 3-5)
    # refinement after LM; -1 = auto: video2mesh takes 1 Gauss-Newton step of each window when
    # smoothness > 0 (else 0); fit_clip (one problem per clip) 200 Adam steps when smoothness > 0
    refine_steps: int = -1
    contour_weight: float = 2.0  # weight of the fitted iBUG-68 jaw points 0-16 (other points: 1)
    # appearance: "model" (texture coefficients per face + SH light per frame, least squares),
    # "extract" (also a UV texture map unwrapped from the frames) or "mean" (mean albedo, fixed
    # light, no estimation); inference/clip_appearance.py
    texture: str = "model"
    # weight of |texture coefficients|^2 against the sum over frames of each frame's mean
    # squared RGB residual; 1e-4 = 0.05^2 / 25: a frame counts like 25 independent face
    # regions fitted to RMS 0.05, against the coefficients' unit-variance prior
    texture_prior: float = 1e-4


@dataclass
class InferenceConfig:
    """video2mesh and evaluation: windows, batching, chunking and the fit mode."""

    mode: str = "auto"  # "auto", "network" or "fit"
    checkpoint: str = ""  # seqdeca model.pt or DECA deca_model.tar; "" = none (fit mode)
    # frames per window, centred on the predicted frame (odd); 0 = a network checkpoint's
    # longest trained window (fit mode and DECA checkpoints: 3)
    window: int = 0
    batch_size: int = 8  # windows per network forward
    chunk_frames: int = 32  # frames decoded, tracked and predicted at a time (memory bound)
    # chunks decoded and tracked ahead, and outputs written behind, by two background threads
    # while the engine predicts (inference/background.py); 0 = all in one thread, same results
    background_chunks: int = 2
    # faces per clip: "largest" (one, in <out>/<clip>/), "all" (up to max_faces) or a number N;
    # several faces are tracked with stable ids into <out>/<clip>/face_K/ (inference/faces.py)
    faces: str = "largest"
    max_faces: int = 4  # faces followed at most with faces="all"
    fit: FitConfig = field(default_factory=FitConfig)


@dataclass
class SyntheticCorruptionConfig:
    """Per-frame corruptions of synthetic clips: the share of frames each one affects (0 = off).

    Drawn from their own generator (seeded by the clip's seed and ``seed``), so the clean draws of
    a clip do not depend on them. ``tools/make_synthetic_data.py --corrupt`` sets a realistic mix.
    """

    seed: int = 0
    occluder: float = 0.0  # opaque or photo-textured blob over the eyes, nose or mouth
    blur: float = 0.0  # motion blur along a random direction
    noise: float = 0.0  # Gaussian sensor noise
    jpeg: float = 0.0  # JPEG quality drop of the source frame
    flicker: float = 0.0  # brightness gain change


@dataclass
class SyntheticDetailConfig:
    """Ground-truth detail of synthetic clips: AU-driven wrinkles and static fine skin detail,
    rendered through the renderer's detail path (:mod:`seqdeca.data.synthetic_detail`).

    On when ``scale`` > 0 (``tools/make_synthetic_data.py --detail``); needs ``expression: au``.
    Drawn from a generator of its own (seeded by the clip's seed and ``seed``), so the clip's
    codes, landmarks and background do not depend on it. gt.npz then holds the detail record.
    """

    scale: float = 0.0  # gain on the documented wrinkle and fine-detail depths; 0 = off
    static: float = 1.0  # extra gain on the static fine detail (0: wrinkles only)
    seed: int = 0
    uv_size: int = 256  # UV side of the displacement rendered into the frames (any render.uv_size)


@dataclass
class SyntheticConfig:
    """Synthetic clips with ground truth (seqdeca.data.synthetic, tools/make_synthetic_data.py).

    The defaults give clean clips whose landmarks are the exact projections (the learning check
    and the tests use them); configs/experiments/temporal.yaml makes clips like real video.
    Angles in degrees, codes in unit-variance units.
    """

    frames: int = 50  # frames per clip (the longest, with min_frames)
    min_frames: int = 0  # > 0: clip lengths drawn uniformly from min_frames..frames
    fps: float = 25.0
    landmarks: str = "exact"  # "exact" projections or "tracked" (MediaPipe + crop, as prepared)
    frame_size: int = 0  # rendered frame side, px, cropped like a video; 0 = render the crop
    expression: str = "smooth"  # "smooth" random curves or "au" (AU intensities + residual)
    residual_expression: float = 0.6  # "au": RMS of the residual expression, per coefficient
    au_events: float = 0.6  # "au": expression events (AU groups or single AUs) per second
    au_scale: float = 1.0  # "au": gain on the AU-driven expression and jaw opening
    background: str = "noise"  # "noise" (smooth colours) or "photo" (scikit-image photographs)
    fast_turns: float = 0.0  # fast head turns per second
    max_yaw: float = 30.0
    max_pitch: float = 20.0
    max_roll: float = 10.0
    expression_scale: float = 1.5  # "smooth" expression amplitude
    shape_scale: float = 1.0
    texture_scale: float = 1.0
    max_jaw: float = 0.3  # radians of mouth opening
    fill: float = 0.8  # fraction of the rendered frame the neutral face spans
    scale_jitter: float = 0.05  # per-clip relative change of that size, +-
    shift_jitter: float = 0.04  # per-frame face offset, +- fraction of the frame's half side
    corruption: SyntheticCorruptionConfig = field(default_factory=SyntheticCorruptionConfig)
    detail: SyntheticDetailConfig = field(default_factory=SyntheticDetailConfig)


@dataclass
class Config:
    """The whole configuration of a seqdeca run."""

    face_model: FaceModelConfig = field(default_factory=FaceModelConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    run: RunConfig = field(default_factory=RunConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
