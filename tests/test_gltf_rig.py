"""The animated glTF rig (``rig.glb``): read back independently and compared with the face model.

The reader here parses the GLB container with ``struct``/``json``/numpy and evaluates the rig
itself (morph targets, node hierarchy with the animation sampled at ``t = k / fps``, linear blend
skinning with the inverse bind matrices), so the writer is checked against the glTF
specification, not against pygltflib. The reference is :class:`FaceModel` in float64 with the same
codes. The bundled model has no pose correctives, so the FLAME-format fixture (random, non-zero
``posedirs``) is the case that shows whether they are kept. When Blender is installed, a headless
import checks the frame range and the vertices at a few frames.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import struct
import subprocess
from pathlib import Path

import asset_factory as af
import numpy as np
import pytest
import torch

from seqdeca.face_model import FaceModel, FlameParams, load_default_assets, load_flame
from seqdeca.face_model.gltf_rig import clip_motion, clip_texture, write_rig

ROOT = Path(__file__).resolve().parents[1]
FPS = 25.0
TOL = 1e-5  # metres; float32 storage of the rig
_DTYPES = {5126: np.float32, 5121: np.uint8, 5123: np.uint16, 5125: np.uint32}
_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


# ---------------------------------------------------------------------- independent reader


class GlbRig:
    """A skinned, morphed, animated glTF 2.0 binary file, evaluated with numpy only."""

    def __init__(self, path: Path) -> None:
        data = path.read_bytes()
        magic, version, length = struct.unpack_from("<4sII", data, 0)
        assert (magic, version, length) == (b"glTF", 2, len(data))
        chunks, offset = [], 12
        while offset < length:
            size, kind = struct.unpack_from("<I4s", data, offset)
            assert size % 4 == 0, "chunks are 4-byte aligned"
            chunks.append((kind, data[offset + 8 : offset + 8 + size]))
            offset += 8 + size
        assert [k for k, _ in chunks] == [b"JSON", b"BIN\0"]
        self.doc = json.loads(chunks[0][1])
        self.blob = chunks[1][1]
        self.nodes = self.doc["nodes"]
        self.parent = {c: i for i, n in enumerate(self.nodes) for c in n.get("children", [])}
        (self.mesh_node,) = [i for i, n in enumerate(self.nodes) if "mesh" in n]
        mesh = self.doc["meshes"][self.nodes[self.mesh_node]["mesh"]]
        (self.prim,) = mesh["primitives"]
        self.extras = mesh.get("extras", {})
        attrs = self.prim["attributes"]
        self.positions = self.accessor(attrs["POSITION"]).astype(np.float64)
        self.indices = self.accessor(self.prim["indices"]).reshape(-1, 3).astype(np.int64)
        targets = [self.accessor(t["POSITION"]) for t in self.prim.get("targets", [])]
        self.targets = np.zeros((len(targets), len(self.positions), 3))
        for i, target in enumerate(targets):
            self.targets[i] = target
        sets = sorted(k[7:] for k in attrs if k.startswith("JOINTS_"))
        self.joints = np.concatenate([self.accessor(attrs[f"JOINTS_{s}"]) for s in sets], 1)
        self.weights = np.concatenate([self.accessor(attrs[f"WEIGHTS_{s}"]) for s in sets], 1)
        skin = self.doc["skins"][self.nodes[self.mesh_node]["skin"]]
        self.skin_joints = skin["joints"]
        # MAT4 accessors are column-major.
        self.inverse_bind = self.accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4)
        self.inverse_bind = self.inverse_bind.transpose(0, 2, 1).astype(np.float64)
        (self.animation,) = self.doc["animations"]

    def accessor(self, index: int) -> np.ndarray:
        acc = self.doc["accessors"][index]
        view = self.doc["bufferViews"][acc["bufferView"]]
        assert "byteStride" not in view, "the writer packs attributes tightly"
        width = _WIDTHS[acc["type"]]
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        dtype = np.dtype(_DTYPES[acc["componentType"]])
        assert start % dtype.itemsize == 0
        assert start + acc["count"] * width * dtype.itemsize <= start + view["byteLength"]
        out = np.frombuffer(self.blob, dtype, count=acc["count"] * width, offset=start)
        return out.reshape(acc["count"], width)

    def times(self) -> np.ndarray:
        return self.accessor(self.animation["samplers"][0]["input"])[:, 0].astype(np.float64)

    def sample(self, t: float) -> dict[tuple[int, str], np.ndarray]:
        """(node, path) -> value of every channel at time t (LINEAR; nlerp for rotations)."""
        out = {}
        for channel in self.animation["channels"]:
            sampler = self.animation["samplers"][channel["sampler"]]
            assert sampler.get("interpolation", "LINEAR") == "LINEAR"
            keys = self.accessor(sampler["input"])[:, 0].astype(np.float64)
            values = self.accessor(sampler["output"]).astype(np.float64).reshape(len(keys), -1)
            i = int(np.clip(np.searchsorted(keys, t, side="right") - 1, 0, len(keys) - 1))
            j = min(i + 1, len(keys) - 1)
            a = 0.0 if j == i else float(np.clip((t - keys[i]) / (keys[j] - keys[i]), 0, 1))
            value = (1 - a) * values[i] + a * values[j]
            if channel["target"]["path"] == "rotation":
                value = value / np.linalg.norm(value)
            out[(channel["target"]["node"], channel["target"]["path"])] = value
        return out

    def _local(self, node: int, anim: dict) -> np.ndarray:
        n = self.nodes[node]
        x, y, z, w = anim.get((node, "rotation"), n.get("rotation", [0, 0, 0, 1]))
        rot = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        m = np.eye(4)
        m[:3, :3] = rot * np.asarray(n.get("scale", [1, 1, 1]))
        m[:3, 3] = anim.get((node, "translation"), n.get("translation", [0, 0, 0]))
        return m

    def _world(self, node: int, anim: dict) -> np.ndarray:
        local = self._local(node, anim)
        return local if node not in self.parent else self._world(self.parent[node], anim) @ local

    def vertices(self, t: float) -> np.ndarray:
        """(V', 3) skinned vertices at time t (the skinned mesh node's own transform is ignored)."""
        anim = self.sample(t)
        weights = anim.get((self.mesh_node, "weights"), np.zeros(len(self.targets)))
        rest = self.positions + np.einsum("m,mvc->vc", weights, self.targets)
        mats = np.stack(
            [self._world(j, anim) @ ib for j, ib in zip(self.skin_joints, self.inverse_bind)]
        )
        per_vertex = np.einsum("vk,vkab->vab", self.weights, mats[self.joints])
        return np.einsum("vab,vb->va", per_vertex[:, :3, :3], rest) + per_vertex[:, :3, 3]

    def model_vertex(self, faces: np.ndarray) -> np.ndarray:
        """(V',) model vertex of every glTF vertex, recovered from the triangles."""
        out = np.full(len(self.positions), -1)
        out[self.indices.reshape(-1)] = faces.reshape(-1)
        again = np.full(len(self.positions), -1)
        again[self.indices.reshape(-1)[::-1]] = faces.reshape(-1)[::-1]
        assert (out == again).all(), "a glTF vertex stands for two model vertices"
        return out


# ------------------------------------------------------------------------------- helpers


def random_codes(fm: FaceModel, frames: int, *, seed: int, full: bool) -> dict[str, np.ndarray]:
    """codes.npz-like arrays: one identity, expressions beyond [-1, 1], head, jaw (and, with
    ``full``, neck and eye) rotations, and frames without a face (0, 4, 5) as NaN."""
    rng = np.random.default_rng(seed)
    codes = {
        "valid": np.ones(frames, bool),
        "shape": np.repeat(rng.normal(size=(1, min(fm.num_shape, 20))), frames, 0),
        "expression": rng.normal(scale=1.5, size=(frames, min(fm.num_expression, 12))),
        "global_pose": rng.normal(scale=0.3, size=(frames, 3)),
        "jaw_pose": np.abs(rng.normal(scale=0.15, size=(frames, 3))),
        "cam": rng.normal(size=(frames, 3)),  # not part of the rig
    }
    if full:
        codes["neck_pose"] = rng.normal(scale=0.2, size=(frames, 3))
        codes["eye_pose"] = rng.normal(scale=0.2, size=(frames, 6))
    codes = {k: v if k == "valid" else v.astype(np.float32) for k, v in codes.items()}
    for value in codes.values():
        value[[0, 4, 5]] = False if value.dtype == bool else np.nan
    return codes


def reference(fm: FaceModel, codes: dict[str, np.ndarray], frames: list[int]) -> np.ndarray:
    """(len(frames), V, 3) float64 face-model vertices of the frames shown at those keys."""
    valid = codes["valid"]
    shown = [
        max([i for i in range(k + 1) if valid[i]], default=int(np.flatnonzero(valid)[0]))
        for k in frames
    ]
    model = copy.deepcopy(fm).double()
    fields = ("expression", "global_pose", "neck_pose", "jaw_pose", "eye_pose")
    params = {k: torch.from_numpy(codes[k][shown].astype(np.float64)) for k in fields if k in codes}
    shape = codes["shape"][valid].astype(np.float64).mean(0)
    params["shape"] = torch.from_numpy(shape).expand(len(frames), -1)
    with torch.no_grad():
        return model(FlameParams(**params)).vertices.numpy()


def rig_error(rig: GlbRig, fm: FaceModel, codes: dict, frames: list[int]) -> float:
    ref = reference(fm, codes, frames)[:, rig.model_vertex(fm.faces.numpy())]
    got = np.stack([rig.vertices(k / FPS) for k in frames])
    return float(np.abs(got - ref).max())


@pytest.fixture(scope="module")
def bundled() -> FaceModel:
    return FaceModel(load_default_assets())


@pytest.fixture(scope="module")
def flame(tmp_path_factory) -> FaceModel:
    paths, _ = af.write_flame_bundle(tmp_path_factory.mktemp("flame"))
    return FaceModel(load_flame(**paths))


# --------------------------------------------------------------------------------- tests


def test_bundled_model_rig_matches_face_model(bundled, tmp_path):
    codes = random_codes(bundled, 10, seed=0, full=False)
    path = write_rig(
        tmp_path / "rig.glb",
        bundled,
        codes,
        fps=FPS,
        name="clip",
        texture=clip_texture(bundled, codes),
    )
    rig = GlbRig(path)
    np.testing.assert_allclose(rig.times(), np.arange(10) / FPS, atol=1e-6)
    assert rig_error(rig, bundled, codes, [0, 1, 3, 4, 5, 9]) < TOL
    names = rig.extras["targetNames"]
    assert not [n for n in names if n.startswith("pose_")]  # the bundled posedirs are zero
    assert {n[:-1] for n in names} == {f"expression_{i:03d}" for i in range(12)}
    weights = rig.accessor(rig.animation["samplers"][-1]["output"])
    assert weights.min() >= 0 and weights.max() <= 1  # Blender clamps to its slider range
    # The texture is the material's base colour, with UVs; the scene is named after the clip.
    assert "TEXCOORD_0" in rig.prim["attributes"] and rig.doc["images"][0]["mimeType"]
    material = rig.doc["materials"][rig.prim["material"]]
    assert material["pbrMetallicRoughness"]["baseColorTexture"]["index"] == 0
    assert rig.doc["scenes"][0]["name"] == "clip"
    assert [rig.nodes[j]["name"] for j in rig.skin_joints] == [
        "root",
        "neck",
        "jaw",
        "left_eye",
        "right_eye",
    ]
    sums = rig.weights.sum(1)
    np.testing.assert_allclose(sums, 1, atol=1e-6)


def test_flame_rig_keeps_pose_correctives(flame, tmp_path):
    codes = random_codes(flame, 8, seed=1, full=True)
    rig = GlbRig(write_rig(tmp_path / "rig.glb", flame, codes, fps=FPS))
    frames = [1, 2, 5, 7]
    assert rig_error(rig, flame, codes, frames) < TOL
    assert any(n.startswith("pose_jaw_") for n in rig.extras["targetNames"])
    # The same comparison without the correctives fails by far: they are not negligible here.
    no_correctives = copy.deepcopy(flame)
    no_correctives.posedirs.zero_()
    assert rig_error(rig, no_correctives, codes, frames) > 20 * TOL
    # The fixture has UV seams (more UVs than vertices): the rig splits vertices there.
    assert len(rig.positions) > len(np.unique(flame.faces.numpy()))
    assert "images" not in rig.doc  # no texture given: a plain material
    colour = rig.doc["materials"][0]["pbrMetallicRoughness"]["baseColorFactor"]
    assert colour[:3] == [0.8, 0.8, 0.8]


def test_joints_follow_the_expression(bundled, tmp_path):
    """LBS regresses joints from the mesh with its expression: the rig's joints translate."""
    codes = random_codes(bundled, 6, seed=2, full=False)
    rig = GlbRig(write_rig(tmp_path / "rig.glb", bundled, codes, fps=FPS))
    jaw = rig.sample(1 / FPS)[(2, "translation")] - rig.sample(2 / FPS)[(2, "translation")]
    assert np.abs(jaw).max() > 1e-4  # metres: far above the tolerance of the vertices


def test_invalid_frames_and_missing_codes(bundled):
    codes = random_codes(bundled, 7, seed=3, full=False)
    motion = clip_motion(bundled, codes)
    assert motion.valid.tolist() == [False, True, True, True, False, False, True]
    np.testing.assert_array_equal(motion.expression[0], motion.expression[1])  # first valid
    np.testing.assert_array_equal(motion.expression[5], motion.expression[3])  # last valid
    assert np.isfinite(motion.full_pose).all() and (motion.full_pose[:, 1] == 0).all()  # neck
    codes["valid"][:] = False
    with pytest.raises(ValueError, match="no valid frame"):
        clip_motion(bundled, codes)


def test_rig_without_expression_has_no_morph_targets(bundled, tmp_path):
    """Codes with head and jaw poses only (e.g. an expressionless clip): a skinned rig."""
    codes = random_codes(bundled, 6, seed=5, full=False)
    del codes["expression"]
    rig = GlbRig(write_rig(tmp_path / "rig.glb", bundled, codes, fps=FPS))
    assert "targets" not in rig.prim and not rig.extras.get("targetNames")
    assert not [c for c in rig.animation["channels"] if c["target"]["path"] == "weights"]
    assert rig_error(rig, bundled, codes, [1, 3, 5]) < TOL


# ---------------------------------------------------------------------------- Blender

BLENDER_SCRIPT = """
import sys
import bpy
import numpy as np

if not hasattr(np, "bool"):  # Blender 3.x importers use the alias that numpy 1.24 dropped
    np.bool = bool
glb, out, fps = sys.argv[sys.argv.index("--") + 1 :][:3]
frames = [int(f) for f in sys.argv[sys.argv.index("--") + 4 :]]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = int(float(fps)), 1.0
bpy.ops.import_scene.gltf(filepath=glb)
obj = next(o for o in scene.objects if o.type == "MESH")
ranges = [list(a.frame_range) for a in bpy.data.actions]
result = {"ranges": np.array(ranges, dtype=np.float64)}
for k in frames:
    scene.frame_set(k)
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = evaluated.to_mesh()
    co = np.array([evaluated.matrix_world @ v.co for v in mesh.vertices], dtype=np.float64)
    evaluated.to_mesh_clear()
    result[f"frame_{k}"] = co
np.savez(out, **result)
"""


@pytest.mark.skipif(shutil.which("blender") is None, reason="Blender is not installed")
def test_blender_imports_the_rig(bundled, flame, tmp_path):
    frames = [1, 3, 6, 9]
    for name, fm in (("bundled", bundled), ("flame", flame)):
        codes = random_codes(fm, 10, seed=4, full=name == "flame")
        glb = write_rig(
            tmp_path / f"{name}.glb", fm, codes, fps=FPS, texture=clip_texture(fm, codes)
        )
        script, out = tmp_path / "check.py", tmp_path / f"{name}.npz"
        script.write_text(BLENDER_SCRIPT)
        subprocess.run(
            [
                "blender",
                "-b",
                "--factory-startup",
                "--python-exit-code",
                "1",
                "--python",
                str(script),
                "--",
                str(glb),
                str(out),
                str(FPS),
                *map(str, frames),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        got = np.load(out)
        assert len(got["ranges"]) and (got["ranges"] == [0, 9]).all(), got["ranges"]
        rig = GlbRig(glb)
        # Blender keeps the used glTF vertices in order (z up: glTF (x, y, z) = (x, z, -y)).
        used = np.unique(rig.indices)
        ref = reference(fm, codes, frames)[:, rig.model_vertex(fm.faces.numpy())[used]]
        for i, k in enumerate(frames):
            x, y, z = got[f"frame_{k}"].T
            np.testing.assert_allclose(np.stack([x, z, -y], 1), ref[i], atol=1e-5)


# --------------------------------------------------------------------------- video2mesh


def test_video2mesh_writes_the_rig_unless_told_not_to(bundled, tmp_path):
    from seqdeca.config import load_config
    from seqdeca.inference.demo import make_demo_clip
    from seqdeca.inference.pipeline import video2mesh

    spec = importlib.util.spec_from_file_location(
        "video2mesh_tool", ROOT / "tools" / "video2mesh.py"
    )
    video2mesh_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(video2mesh_tool)  # works without the repository on sys.path
    clip = make_demo_clip(tmp_path / "astro.mp4", frames=6, size=192, blank=(2, 3))
    fast = ["track.max_gap=0", "inference.fit.iterations=3"]
    cfg = load_config(ROOT / "configs" / "base.yaml", fast)
    (res,) = video2mesh([clip], tmp_path / "out", cfg, video=False, progress=False)
    assert res.status == "done", res.reason
    codes = dict(np.load(res.out / "codes.npz"))
    assert not codes["valid"][2] and codes["valid"][3]
    rig = GlbRig(res.out / "rig.glb")
    summary = json.loads((res.out / "summary.json").read_text())
    assert summary["rig"] is True and rig.doc["scenes"][0]["name"] == "astro"
    np.testing.assert_allclose(rig.times(), np.arange(6) / summary["fps"], atol=1e-6)
    fps = summary["fps"]
    ref = reference(bundled, codes, [1, 2, 5])[:, rig.model_vertex(bundled.faces.numpy())]
    got = np.stack([rig.vertices(k / fps) for k in (1, 2, 5)])
    assert np.abs(got - ref).max() < TOL
    assert "images" in rig.doc  # fit mode: the model's mean albedo
    code = video2mesh_tool.main(
        [str(clip), "--out", str(tmp_path / "plain"), "--no-rig", "--no-video", *fast]
    )
    assert code == 0
    plain = tmp_path / "plain" / "astro"
    assert not (plain / "rig.glb").exists() and (plain / "codes.npz").is_file()
    assert json.loads((plain / "summary.json").read_text())["rig"] is False
