"""An animated glTF 2.0 rig of one clip (``rig.glb``): identity mesh, morph targets, skeleton.

The file holds one scene named after the clip, in glTF's own axes, which are the face model's
(metres, y up, the face looking along +z):

* **mesh**: the clip's identity ``v_template + shapedirs @ shape`` (``shape`` = the mean shape
  code over the valid frames; fit mode keeps it constant anyway) with rest normals, UVs
  (``TEXCOORD_0``, v down as glTF wants; vertices are split at UV seams) and the model's skinning
  weights (``JOINTS_n`` / ``WEIGHTS_n``, four influences a set). Material: the texture when one is
  given, else a plain grey.
* **morph targets**: the expression basis, and the pose correctives (``posedirs``) when the model
  has any (FLAME does; the bundled model's are zero). Names are in ``mesh.extras["targetNames"]``
  (Blender reads them), e.g. ``expression_003+``; see "weights" below.
* **skin**: one node per model joint (``JOINT_NAMES``) in the model's kinematic tree, at the rest
  joints of the identity, with inverse bind matrices.
* **animation** ``clip``: one key per frame at ``t = frame / fps`` (LINEAR): every joint's rotation
  (the codes' axis-angle as an xyzw quaternion) and translation, and the morph weights. Frames
  without a face hold the last valid frame (the first valid one before it).

The rig reproduces the face model (:func:`seqdeca.face_model.lbs.lbs`) at every key, to float32
precision, because glTF and LBS agree step by step:

* glTF adds morph targets before skinning, as LBS adds the expression blend shapes and the pose
  correctives in the rest pose; the correctives' weights are the pose features ``R - I``.
* LBS regresses the joints from the mesh WITH its expression, so joints move with the expression
  (millimetres), whereas a glTF joint keeps its inverse bind matrix. Each joint therefore gets a
  per-frame translation chosen so that ``world_j @ inverse_bind_j`` equals LBS's transform of
  joint j.
* Weights: Blender clamps a shape key's value to its slider range (``[0, 1]`` unless widened), so
  every weight written is in ``[0, 1]``: a basis direction ``d`` whose coefficient ``c`` takes
  positive values in the clip gets a target ``name+`` = ``s * d`` with weight ``max(c, 0) / s``,
  negative values a target ``name-`` = ``-s * d`` with weight ``max(-c, 0) / s``, where ``s`` =
  max(1, the largest ``|c|`` of that sign); ``s`` is in ``mesh.extras["targetScales"]``.
  Directions the clip never uses get no target.

The camera (``cam``) stays out of the rig: head motion is the root joint's rotation.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pygltflib as gl
import torch
from PIL import Image

from seqdeca import __version__
from seqdeca.face_model.assets import JOINT_NAMES
from seqdeca.face_model.layer import FaceModel, FlameParams
from seqdeca.face_model.lbs import pose_features, regress_joints, rigid_transforms
from seqdeca.geometry.mesh import vertex_normals
from seqdeca.geometry.rotation import axis_angle_to_matrix
from seqdeca.io.obj import texture_to_uint8

__all__ = ["RIG_CODES", "ClipMotion", "build_rig", "clip_motion", "clip_texture", "write_rig"]

#: Codes that a rig reads (the others of codes.npz are ignored).
RIG_CODES = (
    "valid",
    "shape",
    "expression",
    "global_pose",
    "neck_pose",
    "jaw_pose",
    "eye_pose",
    "texture",
)
#: Coefficients with no magnitude above this in the clip get no morph target.
UNUSED = 1e-7
_POSE_KEYS = ("global_pose", "neck_pose", "jaw_pose", "eye_pose")
_FLOAT, _UBYTE, _USHORT, _UINT = 5126, 5121, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_PLAIN_COLOUR = [0.8, 0.8, 0.8, 1.0]


@dataclass
class ClipMotion:
    """A clip's face-model parameters with the frames without a face filled in.

    Attributes:
        shape: (S',) identity coefficients (mean over the valid frames).
        expression: (T, E') expression coefficients.
        full_pose: (T, J, 3) axis-angle radians per joint, ``JOINT_NAMES`` order.
        valid: (T,) bool, the frames that had finite codes (the others hold a valid frame).
    """

    shape: np.ndarray
    expression: np.ndarray
    full_pose: np.ndarray
    valid: np.ndarray


def clip_motion(face_model: FaceModel, codes: Mapping[str, np.ndarray]) -> ClipMotion:
    """Per-frame parameters from ``codes.npz``-style arrays (each with a leading T axis).

    Missing pose parts (e.g. ``neck_pose``, ``eye_pose`` in video2mesh) count as zero. A frame
    is valid when ``codes["valid"]`` (if given) says so and its codes are finite; the others
    hold the last valid frame (the first valid frame before it).

    Raises:
        ValueError: no frame is valid.
    """
    keys = [k for k in ("shape", "expression", *_POSE_KEYS) if k in codes]
    arrays = {k: np.asarray(codes[k], dtype=np.float64) for k in keys}
    frames = len(next(iter(arrays.values()))) if arrays else len(codes.get("valid", ()))
    valid = np.asarray(codes.get("valid", np.ones(frames, bool)), dtype=bool).copy()
    for value in arrays.values():
        valid &= np.isfinite(value.reshape(frames, -1)).all(axis=1)
    if not valid.any():
        raise ValueError(f"no valid frame among the {frames} frames of the codes")
    last = np.maximum.accumulate(np.where(valid, np.arange(frames), -1))
    hold = np.where(last < 0, np.flatnonzero(valid)[0], last)  # (T,) the frame each one shows
    held = {k: v[hold] for k, v in arrays.items()}
    device = face_model.v_template.device
    poses = {k: torch.from_numpy(held[k]).to(device) for k in _POSE_KEYS if k in held}
    if poses:  # the model's own assembly of the full pose (missing parts are zeros)
        full_pose = face_model.full_pose(FlameParams(**poses)).cpu().double().numpy()
    else:
        full_pose = np.zeros((frames, 3 * face_model.num_joints))
    return ClipMotion(
        shape=arrays["shape"][valid].mean(axis=0) if "shape" in arrays else np.zeros(0),
        expression=held.get("expression", np.zeros((frames, 0))),
        full_pose=full_pose.reshape(frames, face_model.num_joints, 3),
        valid=valid,
    )


def clip_texture(face_model: FaceModel, codes: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """(H, W, 3) albedo in [0, 1] of the mean texture code over valid frames (row 0 = top), or
    None when the model has no texture space or no UVs."""
    if face_model.texture_mean is None or face_model.verts_uvs is None:
        return None
    k = 0 if "texture" not in codes else np.asarray(codes["texture"]).shape[-1]
    mean = np.zeros(k)
    if k:
        rows = np.asarray(codes["texture"], dtype=np.float64).reshape(-1, k)
        rows = rows[np.isfinite(rows).all(axis=1)]
        mean = rows.mean(axis=0) if len(rows) else mean
    with torch.no_grad():
        code = torch.as_tensor(
            mean, dtype=face_model.texture_mean.dtype, device=face_model.texture_mean.device
        )
        albedo = face_model.albedo(code).clamp(0, 1)
    return albedo.permute(1, 2, 0).cpu().numpy()


# ------------------------------------------------------------------------------- rig content


def _buffers(face_model: FaceModel) -> dict[str, torch.Tensor]:
    """The model's geometry buffers as float64 on the CPU (the rig is computed in float64)."""
    names = ("v_template", "shapedirs", "exprdirs", "posedirs", "j_regressor", "lbs_weights")
    return {n: getattr(face_model, n).detach().to("cpu", torch.float64) for n in names}


def _joint_curves(
    buf: dict[str, torch.Tensor],
    parents: tuple[int, ...],
    motion: ClipMotion,
    rest_vertices: torch.Tensor,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rest joints (J, 3), local rotations (T, J, 3, 3) and local translations (T, J, 3).

    The translations make every glTF joint matrix ``world_j @ translate(-rest_j)`` equal to
    LBS's skinning transform ``A_j``, whose joints are regressed with the frame's expression.
    """
    rest = regress_joints(buf["j_regressor"], rest_vertices[None])[0]  # (J, 3)
    e = motion.expression.shape[1]
    dirs = buf["exprdirs"][..., :e].permute(2, 0, 1)  # (E', V, 3): one "mesh" per component
    joints = rest + torch.einsum(
        "te,ejc->tjc", torch.from_numpy(motion.expression), regress_joints(buf["j_regressor"], dirs)
    )
    rot = axis_angle_to_matrix(torch.from_numpy(motion.full_pose))  # (T, J, 3, 3)
    _, skin = rigid_transforms(rot, joints, parents)  # (T, J, 4, 4)
    world_r = skin[..., :3, :3]
    world_t = skin[..., :3, 3] + torch.einsum("tjab,jb->tja", world_r, rest)  # node origins
    local_t = world_t.clone()
    for j, p in enumerate(parents):
        if p >= 0:  # the offset from the parent, in the parent's frame
            local_t[:, j] = torch.einsum("tba,tb->ta", world_r[:, p], world_t[:, j] - world_t[:, p])
    return rest.numpy(), rot.numpy(), local_t.numpy()


def _signed_targets(
    coeffs: np.ndarray, names: list[str]
) -> tuple[np.ndarray, list[int], np.ndarray, list[str]]:
    """Split signed coefficients (T, K) into weights in [0, 1] of signed, scaled targets.

    Returns:
        weights: (T, M); source: M column indices into K; scale: (M,) signed factor of the
        source direction; names: M target names (``name+`` / ``name-``).
    """
    cols, sources, scales, out_names = [], [], [], []
    for k, name in enumerate(names):
        for sign, suffix in ((1.0, "+"), (-1.0, "-")):
            part = np.clip(sign * coeffs[:, k], 0.0, None)
            if part.max(initial=0.0) <= UNUSED:
                continue
            s = max(1.0, float(part.max()))
            cols.append(part / s)
            sources.append(k)
            scales.append(sign * s)
            out_names.append(name + suffix)
    weights = np.stack(cols, axis=1) if cols else np.zeros((len(coeffs), 0))
    return weights, sources, np.asarray(scales), out_names


def _morphs(
    buf: dict[str, torch.Tensor],
    motion: ClipMotion,
    rot: np.ndarray,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, list[str]]:
    """Morph targets (M, V, 3) on the model's vertices, weights (T, M), scales (M,), names.

    ``rot`` (T, J, 3, 3): the local joint rotations, whose pose features weigh the correctives.
    """
    e = motion.expression.shape[1]
    basis = [buf["exprdirs"][..., :e]]
    coeffs = [motion.expression]
    names = [f"expression_{i:03d}" for i in range(e)]
    posedirs = buf["posedirs"]
    used = torch.nonzero(posedirs.abs().amax(dim=(0, 1)) > 0)[:, 0].tolist()
    if used:  # pose correctives: weights are the pose features R - I of the non-root joints
        feats = pose_features(torch.from_numpy(rot)).numpy()
        basis.append(posedirs[..., used])
        coeffs.append(feats[:, used])
        names += [f"pose_{JOINT_NAMES[1 + c // 9]}_{c % 9 // 3}{c % 3}" for c in used]
    dirs = torch.cat(basis, dim=-1)  # (V, 3, K)
    weights, sources, scales, names = _signed_targets(np.concatenate(coeffs, axis=1), names)
    targets = dirs[..., sources].permute(2, 0, 1) * torch.from_numpy(scales)[:, None, None]
    return targets, weights, scales, names


def _split_at_seams(face_model: FaceModel) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """glTF vertices: (V',) model vertex of each, (V', 2) glTF UVs or None, (F, 3) indices."""
    faces = face_model.faces.cpu().numpy()
    if face_model.verts_uvs is None:
        return np.arange(face_model.num_vertices), None, faces
    pairs = np.stack([faces.reshape(-1), face_model.faces_uvs.cpu().numpy().reshape(-1)], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    uv = face_model.verts_uvs.cpu().numpy()[unique[:, 1]].astype(np.float64)
    uv[:, 1] = 1.0 - uv[:, 1]  # glTF's v runs down the image
    return unique[:, 0], uv, inverse.reshape(faces.shape)


def _skin_sets(weights: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(V, J) skinning weights -> [(joints (V, 4), weights (V, 4))] sets, largest first."""
    n = max(1, int((weights > 0).sum(axis=1).max(initial=0)))
    order = np.argsort(-weights, axis=1, kind="stable")[:, : 4 * -(-n // 4)]
    picked = np.take_along_axis(weights, order, axis=1)
    order = np.where(picked > 0, order, 0)
    if order.shape[1] % 4:  # pad the last set with empty influences
        pad = 4 - order.shape[1] % 4
        order = np.pad(order, ((0, 0), (0, pad)))
        picked = np.pad(picked, ((0, 0), (0, pad)))
    return [(order[:, i : i + 4], picked[:, i : i + 4]) for i in range(0, order.shape[1], 4)]


def _quaternions(axis_angle: np.ndarray) -> np.ndarray:
    """(T, J, 3) axis-angle -> (T, J, 4) xyzw unit quaternions, signs continuous over T."""
    theta = np.linalg.norm(axis_angle, axis=-1, keepdims=True)
    half = theta / 2
    # sin(theta/2)/theta with its Taylor series near zero.
    small = theta < 1e-6
    factor = np.where(small, 0.5 - theta**2 / 48, np.sin(half) / np.where(small, 1.0, theta))
    quat = np.concatenate([axis_angle * factor, np.cos(half)], axis=-1)
    dots = (quat[1:] * quat[:-1]).sum(axis=-1)  # (T-1, J)
    flips = np.cumprod(np.where(dots < 0, -1.0, 1.0), axis=0)
    quat[1:] *= flips[..., None]
    return quat


# ------------------------------------------------------------------------------ glTF assembly


class _Packer:
    """Arrays packed into the file's one binary buffer, a bufferView and an accessor each."""

    def __init__(self, gltf: gl.GLTF2) -> None:
        self.gltf = gltf
        self.blob = bytearray()

    def view(self, data: bytes, target: int | None = None) -> int:
        self.blob += b"\0" * (-len(self.blob) % 4)
        self.gltf.bufferViews.append(
            gl.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=len(data), target=target)
        )
        self.blob += data
        return len(self.gltf.bufferViews) - 1

    def accessor(
        self, array: np.ndarray, kind: str, *, target: int | None = None, bounds: bool = False
    ) -> int:
        """``array`` (count, ...) as an accessor of ``kind`` ("VEC3", ...); floats as float32."""
        component = {
            np.dtype(np.uint8): _UBYTE,
            np.dtype(np.uint16): _USHORT,
            np.dtype(np.uint32): _UINT,
        }.get(np.asarray(array).dtype, _FLOAT)
        if component == _FLOAT:
            array = np.asarray(array, dtype=np.float32)
        array = np.ascontiguousarray(array)
        acc = gl.Accessor(
            bufferView=self.view(array.tobytes(), target),
            componentType=component,
            count=len(array),
            type=kind,
        )
        if bounds:
            flat = array.reshape(len(array), -1)
            acc.min, acc.max = flat.min(axis=0).tolist(), flat.max(axis=0).tolist()
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1


def _material(pack: _Packer, texture: np.ndarray | None) -> int:
    """The mesh's material: ``texture`` (H, W, 3) in [0, 1] (row 0 = top) or plain grey."""
    gltf = pack.gltf
    pbr = gl.PbrMetallicRoughness(
        baseColorFactor=_PLAIN_COLOUR, metallicFactor=0.0, roughnessFactor=0.8
    )
    if texture is not None:
        png = io.BytesIO()
        Image.fromarray(texture_to_uint8(texture)).save(png, format="PNG")
        gltf.images.append(gl.Image(bufferView=pack.view(png.getvalue()), mimeType="image/png"))
        gltf.samplers.append(
            gl.Sampler(magFilter=9729, minFilter=9987, wrapS=33071, wrapT=33071)
        )  # linear, mipmapped, clamped
        gltf.textures.append(gl.Texture(sampler=0, source=0))
        pbr.baseColorFactor = [1.0, 1.0, 1.0, 1.0]
        pbr.baseColorTexture = gl.TextureInfo(index=0)
    gltf.materials.append(gl.Material(name="face", pbrMetallicRoughness=pbr))
    return len(gltf.materials) - 1


def _primitive(
    pack: _Packer,
    face_model: FaceModel,
    rest_vertices: torch.Tensor,
    targets: np.ndarray,
    texture: np.ndarray | None,
) -> gl.Primitive:
    """The one triangle primitive: attributes, indices, material and morph targets."""
    src, uv, indices = _split_at_seams(face_model)
    normals = vertex_normals(rest_vertices[None], face_model.faces.cpu())[0].numpy()[src]
    normals[np.linalg.norm(normals, axis=1) < 0.5] = (0.0, 0.0, 1.0)  # vertices on no face
    attrs = gl.Attributes(
        POSITION=pack.accessor(
            rest_vertices.numpy()[src], "VEC3", target=_ARRAY_BUFFER, bounds=True
        ),
        NORMAL=pack.accessor(normals, "VEC3", target=_ARRAY_BUFFER),
    )
    if uv is not None:
        attrs.TEXCOORD_0 = pack.accessor(uv, "VEC2", target=_ARRAY_BUFFER)
    weights = face_model.lbs_weights.detach().cpu().numpy()[src]
    joint_type = np.uint8 if face_model.num_joints < 256 else np.uint16
    for i, (joints, w) in enumerate(_skin_sets(weights)):
        setattr(
            attrs,
            f"JOINTS_{i}",
            pack.accessor(joints.astype(joint_type), "VEC4", target=_ARRAY_BUFFER),
        )
        setattr(attrs, f"WEIGHTS_{i}", pack.accessor(w, "VEC4", target=_ARRAY_BUFFER))
    index_type = np.uint16 if len(src) < 65535 else np.uint32
    prim = gl.Primitive(
        attributes=attrs,
        material=_material(pack, texture if uv is not None else None),
        indices=pack.accessor(
            indices.reshape(-1).astype(index_type), "SCALAR", target=_ELEMENT_ARRAY_BUFFER
        ),
    )
    prim.targets = [
        gl.Attributes(POSITION=pack.accessor(t[src], "VEC3", target=_ARRAY_BUFFER, bounds=True))
        for t in targets
    ]
    return prim


def _skeleton(pack: _Packer, parents: tuple[int, ...], rest_joints: np.ndarray) -> int:
    """Joint nodes 0..J-1 at the rest joints (J, 3) and their skin; returns the skin index."""
    gltf = pack.gltf
    for j, parent in enumerate(parents):
        offset = rest_joints[j] - (rest_joints[parent] if parent >= 0 else 0.0)
        children = [c for c, p in enumerate(parents) if p == j]
        gltf.nodes.append(
            gl.Node(name=JOINT_NAMES[j], translation=offset.tolist(), children=children)
        )
    inverse_bind = np.tile(np.eye(4), (len(parents), 1, 1))
    inverse_bind[:, :3, 3] = -rest_joints
    gltf.skins.append(
        gl.Skin(
            name="face_skeleton",
            joints=list(range(len(parents))),
            skeleton=0,
            inverseBindMatrices=pack.accessor(inverse_bind.transpose(0, 2, 1), "MAT4"),  # columns
        )
    )
    return len(gltf.skins) - 1


def _animation(
    pack: _Packer,
    times: np.ndarray,
    quaternions: np.ndarray,
    translations: np.ndarray,
    weights: np.ndarray,
    mesh_node: int,
) -> None:
    """The "clip" animation: per-joint rotation and translation, morph weights (T keys)."""
    samplers: list[gl.AnimationSampler] = []
    channels: list[gl.AnimationChannel] = []
    keys = pack.accessor(times, "SCALAR", bounds=True)

    def add(node: int, path: str, values: np.ndarray, kind: str) -> None:
        samplers.append(
            gl.AnimationSampler(
                input=keys, output=pack.accessor(values, kind), interpolation="LINEAR"
            )
        )
        target = gl.AnimationChannelTarget(node=node, path=path)
        channels.append(gl.AnimationChannel(sampler=len(samplers) - 1, target=target))

    for j in range(quaternions.shape[1]):
        add(j, "rotation", quaternions[:, j], "VEC4")
        add(j, "translation", translations[:, j], "VEC3")
    if weights.shape[1]:
        add(mesh_node, "weights", weights.reshape(-1), "SCALAR")  # frame-major, M per key
    pack.gltf.animations.append(gl.Animation(name="clip", samplers=samplers, channels=channels))


def build_rig(
    face_model: FaceModel,
    codes: Mapping[str, np.ndarray],
    *,
    fps: float,
    texture: np.ndarray | None = None,
    name: str = "face",
) -> gl.GLTF2:
    """The rig of a clip as a :class:`pygltflib.GLTF2` with its binary blob set.

    Args:
        face_model: the model the codes belong to (any device).
        codes: ``codes.npz``-style arrays with a leading T axis (see :func:`clip_motion`).
        fps: frames per second of the clip (key k is at ``k / fps`` seconds).
        texture: (H, W, 3) albedo in [0, 1], row 0 = top, for a model with UVs; None: plain.
        name: the scene's and mesh's name (the clip's).
    """
    motion = clip_motion(face_model, codes)
    buf = _buffers(face_model)
    s = len(motion.shape)
    rest_vertices = buf["v_template"] + torch.einsum(
        "vck,k->vc", buf["shapedirs"][..., :s], torch.from_numpy(motion.shape)
    )  # (V, 3) the clip's identity
    parents = face_model.parents_list
    rest_joints, rot, local_t = _joint_curves(buf, parents, motion, rest_vertices)
    targets, weights, scales, names = _morphs(buf, motion, rot)
    gltf = gl.GLTF2(asset=gl.Asset(generator=f"seqdeca {__version__}"))
    pack = _Packer(gltf)
    prim = _primitive(pack, face_model, rest_vertices, targets.numpy(), texture)
    gltf.meshes.append(
        gl.Mesh(
            name=name,
            primitives=[prim],
            weights=[0.0] * len(names),
            extras={"targetNames": names, "targetScales": scales.tolist()},
        )
    )
    skin = _skeleton(pack, parents, rest_joints)
    gltf.nodes.append(gl.Node(name=name, mesh=0, skin=skin))
    mesh_node = len(gltf.nodes) - 1
    frames = len(motion.valid)
    _animation(
        pack, np.arange(frames) / fps, _quaternions(motion.full_pose), local_t, weights, mesh_node
    )
    gltf.scenes.append(
        gl.Scene(
            name=name,
            nodes=[0, mesh_node],
            extras={
                "fps": float(fps),
                "frames": frames,
                "valid_frames": int(motion.valid.sum()),
                "face_model": face_model.name,
                "shape": motion.shape.tolist(),
            },
        )
    )
    gltf.scene = 0
    gltf.buffers.append(gl.Buffer(byteLength=len(pack.blob)))
    gltf.set_binary_blob(bytes(pack.blob))
    return gltf


def write_rig(
    path: str | Path,
    face_model: FaceModel,
    codes: Mapping[str, np.ndarray],
    *,
    fps: float,
    texture: np.ndarray | None = None,
    name: str = "face",
) -> Path:
    """Write the clip's rig as a binary glTF (``.glb``) file; see the module docstring.

    Args:
        path: the ``.glb`` to write (under a temporary name first, then renamed).
        face_model, codes, fps, texture, name: as :func:`build_rig`.

    Returns:
        ``path``.
    """
    path = Path(path)
    gltf = build_rig(face_model, codes, fps=fps, texture=texture, name=name)
    tmp = path.with_name(path.name + ".tmp")
    gltf.save_binary(str(tmp))
    tmp.replace(path)
    return path
