"""The in-memory form of a FLAME-format face model, and seqdeca's own ``.npz`` file for it.

A :class:`FaceModelAssets` is what every loader produces: the official FLAME pickle plus DECA's
side files (``seqdeca.face_model.flame_io``) and seqdeca's bundled default model (an ``.npz``
written by :func:`save_assets`) end up in exactly this structure, and the rest of seqdeca only
ever sees this structure. Arrays are numpy; the layer turns them into buffers.

Joints are always ``JOINT_NAMES`` in this order (FLAME's kinematic tree: root -> neck ->
{jaw, left eye, right eye}). UV coordinates follow the OBJ convention: (u, v) in [0, 1] with
v = 0 at the BOTTOM row of a UV image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqdeca.errors import UserError

JOINT_NAMES = ("root", "neck", "jaw", "left_eye", "right_eye")
FORMAT_VERSION = 1


class AssetError(UserError, ValueError):
    """A face-model asset file is missing or not in the expected format (one-line message)."""


@dataclass
class LandmarkEmbedding:
    """Landmarks as barycentric points on mesh faces.

    Attributes:
        face_idx: (L,) int64 face index of every landmark.
        bary: (L, 3) float32 barycentric coordinates (rows sum to 1).
    """

    face_idx: np.ndarray
    bary: np.ndarray

    def __post_init__(self) -> None:
        self.face_idx = np.asarray(self.face_idx, dtype=np.int64).reshape(-1)
        self.bary = np.asarray(self.bary, dtype=np.float32).reshape(-1, 3)
        if len(self.face_idx) != len(self.bary):
            raise AssetError(
                f"landmark embedding has {len(self.face_idx)} faces but {len(self.bary)} "
                "barycentric rows"
            )


@dataclass
class DynamicContour:
    """DECA's yaw-dependent jaw contour (17 landmarks chosen by the neck-chain yaw).

    Attributes:
        face_idx: (Y, 17) int64, one row per integer yaw in degrees from -(Y-1)/2 to (Y-1)/2.
        bary: (Y, 17, 3) float32.
    """

    face_idx: np.ndarray
    bary: np.ndarray

    def __post_init__(self) -> None:
        self.face_idx = np.asarray(self.face_idx, dtype=np.int64)
        self.bary = np.asarray(self.bary, dtype=np.float32)
        if self.face_idx.ndim != 2 or self.bary.shape != (*self.face_idx.shape, 3):
            raise AssetError(
                f"dynamic contour must be (Y,K) faces and (Y,K,3) barycentrics, got "
                f"{self.face_idx.shape} and {self.bary.shape}"
            )


@dataclass
class FaceModelAssets:
    """A FLAME-format face model (geometry, landmarks, UVs and appearance).

    Attributes:
        name: short identifier, recorded with checkpoints ("flame2020", "seqdeca-default", ...).
        v_template: (V, 3) mean shape, metres.
        faces: (F, 3) int64, counter-clockwise seen from outside.
        shapedirs: (V, 3, S) identity basis (metres per unit coefficient).
        exprdirs: (V, 3, E) expression basis.
        posedirs: (V, 3, 9 * (J - 1)) pose-corrective basis over (R - I) of the non-root joints.
        j_regressor: (J, V) dense joint regressor.
        lbs_weights: (V, J) skinning weights (rows sum to 1).
        parents: (J,) int64 kinematic parents, -1 for the root.
        verts_uvs: (VT, 2) UV coordinates; faces_uvs: (F, 3) int64 indices into verts_uvs.
        landmarks: named barycentric landmark sets. Conventional names: "ibug68" (68 static
            points), "ibug68_static" (DECA's 51 static points, used with ``dynamic_contour``),
            "mediapipe105" (FLAME's MediaPipe embedding), "mediapipe478" (all MediaPipe points).
        landmark_vertex_ids: optional per-set ids of the points in their own convention, e.g.
            the MediaPipe vertex id of each "mediapipe105" landmark.
        dynamic_contour: DECA's dynamic jaw contour, or None.
        uv_face_mask, uv_face_eye_mask: (H, W) float32 in [0, 1] (row 0 = top = v 1), or None.
        fixed_displacement: (H, W) float32 UV displacement added to details, or None.
        texture_mean: (3, H, W) float32 mean albedo in [0, 1] (RGB), or None.
        texture_basis: (K, 3, H, W) float32 albedo basis, or None.
        meta: free-form provenance (how it was built, from what).
    """

    name: str
    v_template: np.ndarray
    faces: np.ndarray
    shapedirs: np.ndarray
    exprdirs: np.ndarray
    posedirs: np.ndarray
    j_regressor: np.ndarray
    lbs_weights: np.ndarray
    parents: np.ndarray
    verts_uvs: np.ndarray | None = None
    faces_uvs: np.ndarray | None = None
    landmarks: dict[str, LandmarkEmbedding] = field(default_factory=dict)
    landmark_vertex_ids: dict[str, np.ndarray] = field(default_factory=dict)
    dynamic_contour: DynamicContour | None = None
    uv_face_mask: np.ndarray | None = None
    uv_face_eye_mask: np.ndarray | None = None
    fixed_displacement: np.ndarray | None = None
    texture_mean: np.ndarray | None = None
    texture_basis: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_shape(self) -> int:
        return int(self.shapedirs.shape[2])

    @property
    def num_expression(self) -> int:
        return int(self.exprdirs.shape[2])

    @property
    def num_texture(self) -> int:
        return 0 if self.texture_basis is None else int(self.texture_basis.shape[0])

    def validate(self) -> None:
        """Check shapes against each other; raise :class:`AssetError` with one line if off."""
        v = self.v_template.shape[0]
        j = len(JOINT_NAMES)
        want = {
            "v_template": (self.v_template, (v, 3)),
            "shapedirs": (self.shapedirs, (v, 3, None)),
            "exprdirs": (self.exprdirs, (v, 3, None)),
            "posedirs": (self.posedirs, (v, 3, 9 * (j - 1))),
            "j_regressor": (self.j_regressor, (j, v)),
            "lbs_weights": (self.lbs_weights, (v, j)),
            "parents": (self.parents, (j,)),
            "faces": (self.faces, (None, 3)),
        }
        for key, (arr, shape) in want.items():
            ok = arr.ndim == len(shape) and all(
                s is None or s == a for s, a in zip(shape, arr.shape)
            )
            if not ok:
                pretty = tuple("*" if s is None else s for s in shape)
                raise AssetError(
                    f"face model '{self.name}': {key} has shape {arr.shape}, expected {pretty}"
                )
        if self.faces.max(initial=0) >= v:
            raise AssetError(
                f"face model '{self.name}': faces index vertex {self.faces.max()} >= V={v}"
            )
        if (self.verts_uvs is None) != (self.faces_uvs is None):
            raise AssetError(f"face model '{self.name}': verts_uvs and faces_uvs come together")
        if self.faces_uvs is not None and self.faces_uvs.shape != self.faces.shape:
            raise AssetError(
                f"face model '{self.name}': faces_uvs {self.faces_uvs.shape} != faces {self.faces.shape}"
            )
        n_faces = self.faces.shape[0]
        for lname, emb in self.landmarks.items():
            if len(emb.face_idx) and emb.face_idx.max() >= n_faces:
                raise AssetError(
                    f"face model '{self.name}': landmarks '{lname}' index a face >= F={n_faces}"
                )


_ARRAYS = (
    "v_template",
    "faces",
    "shapedirs",
    "exprdirs",
    "posedirs",
    "j_regressor",
    "lbs_weights",
    "parents",
    "verts_uvs",
    "faces_uvs",
    "uv_face_mask",
    "uv_face_eye_mask",
    "fixed_displacement",
    "texture_mean",
    "texture_basis",
)
_HALF = ("shapedirs", "exprdirs", "posedirs", "texture_basis")  # stored as float16 if asked


def save_assets(assets: FaceModelAssets, path: str | Path, compact: bool = False) -> Path:
    """Write ``assets`` as a seqdeca face-model ``.npz`` (atomically).

    Args:
        assets: the model.
        path: destination, ending in ``.npz``.
        compact: store bases as float16 (about half the size; used for the bundled model).
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for key in _ARRAYS:
        value = getattr(assets, key)
        if value is not None:
            arrays[key] = value.astype(np.float16) if compact and key in _HALF else value
    for lname, emb in assets.landmarks.items():
        arrays[f"landmarks/{lname}/face_idx"] = emb.face_idx
        arrays[f"landmarks/{lname}/bary"] = emb.bary
    for lname, ids in assets.landmark_vertex_ids.items():
        arrays[f"landmark_vertex_ids/{lname}"] = np.asarray(ids)
    if assets.dynamic_contour is not None:
        arrays["dynamic_contour/face_idx"] = assets.dynamic_contour.face_idx
        arrays["dynamic_contour/bary"] = assets.dynamic_contour.bary
    header = {
        "format": "seqdeca-face-model",
        "version": FORMAT_VERSION,
        "name": assets.name,
        "meta": assets.meta,
    }
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def load_assets(path: str | Path) -> FaceModelAssets:
    """Read a seqdeca face-model ``.npz`` written by :func:`save_assets`."""
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"face model file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        header = json.loads(bytes(data.pop("header")).decode())
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the same user error
        raise AssetError(
            f"{path} is not a seqdeca face-model .npz ({type(exc).__name__}: {exc})"
        ) from None
    if header.get("format") != "seqdeca-face-model":
        raise AssetError(
            f"{path} is not a seqdeca face-model .npz (format={header.get('format')!r})"
        )
    kwargs: dict = {}
    for key in _ARRAYS:
        if key in data:
            arr = data[key]
            kwargs[key] = arr.astype(np.float32) if arr.dtype == np.float16 else arr
    landmarks: dict[str, LandmarkEmbedding] = {}
    ids: dict[str, np.ndarray] = {}
    for key, arr in data.items():
        parts = key.split("/")
        if parts[0] == "landmarks" and parts[2] == "face_idx":
            landmarks[parts[1]] = LandmarkEmbedding(arr, data[f"landmarks/{parts[1]}/bary"])
        elif parts[0] == "landmark_vertex_ids":
            ids[parts[1]] = arr
    contour = None
    if "dynamic_contour/face_idx" in data:
        contour = DynamicContour(data["dynamic_contour/face_idx"], data["dynamic_contour/bary"])
    return FaceModelAssets(
        name=header["name"],
        landmarks=landmarks,
        landmark_vertex_ids=ids,
        dynamic_contour=contour,
        meta=header.get("meta", {}),
        **kwargs,
    )
