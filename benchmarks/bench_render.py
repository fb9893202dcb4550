"""Benchmark the built-in renderer against a ResNet-50 forward on the same batch.

    python benchmarks/bench_render.py [--batch 8] [--image-size 224] [--repeats 10] [--device cpu]
                                      [--threads N]

(``make bench`` and ``python tools/bench_render.py`` run this script.) Prints a table of median
milliseconds; the target is render / ResNet-50 <= 0.25. On a CPU that other processes are using,
PyTorch's multi-threaded operations stall at every thread barrier and the renderer (hundreds of
mid-sized operations) suffers far more than ResNet-50; the script warns when the machine looks
busy. ``--threads 1`` gives stable figures on a shared machine.

FLAME itself cannot be shipped, so the benchmark renders a head-sized open ellipsoid with exactly
FLAME's counts (5023 vertices, 9976 faces): a pole at the crown, 81 rings of 62 vertices, open at
the neck, with a 3-quad "mouth" slit removed. It has a cylindrical UV layout with a seam at the
back (so ``faces_uvs`` differs from ``faces``, as in FLAME). The renderer tests use the same head
(:func:`synthetic_head`, :func:`head_batch`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass

import torch

from seqdeca.geometry import axis_angle_to_matrix
from seqdeca.render.renderer import Renderer


@dataclass(frozen=True)
class SyntheticHead:
    """A synthetic head mesh.

    Attributes:
        vertices: (V, 3) metres, y up, face towards +z (the camera).
        faces: (F, 3) int64, counter-clockwise seen from outside.
        verts_uvs: (VT, 2) UV coordinates in [0, 1] (v = 1 at the top of the UV image).
        faces_uvs: (F, 3) int64 indices into ``verts_uvs``.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    verts_uvs: torch.Tensor
    faces_uvs: torch.Tensor


def _fan_and_bands(
    rings: int, segments: int, pole: torch.Tensor, first: int, stride: int, wrap: bool
) -> torch.Tensor:
    """Faces of a pole fan plus quad bands between rings, for vertex ids laid out as
    ``first + ring * stride + segment`` (segment taken modulo ``segments`` when ``wrap``).

    Args:
        pole: (segments,) id of the pole vertex of each fan triangle.

    Returns:
        (segments * (2 * rings - 1), 3) int64, counter-clockwise seen from outside.
    """

    def vid(r: torch.Tensor | int, s: torch.Tensor) -> torch.Tensor:
        return first + r * stride + (s % segments if wrap else s)

    s = torch.arange(segments)
    fan = torch.stack([pole, vid(0, s), vid(0, s + 1)], 1)
    r, s = (t.reshape(-1) for t in torch.meshgrid(torch.arange(rings - 1), s, indexing="ij"))
    a, b, c, d = vid(r, s), vid(r + 1, s), vid(r + 1, s + 1), vid(r, s + 1)
    quads = torch.stack([torch.stack([a, b, c], 1), torch.stack([a, c, d], 1)], 1)
    return torch.cat([fan, quads.reshape(-1, 3)])


def synthetic_head(
    *, rings: int = 81, segments: int = 62, radii: tuple[float, float, float] = (0.08, 0.11, 0.095)
) -> SyntheticHead:
    """Build the open ellipsoid described in the module docstring.

    Args:
        rings: vertex rings below the crown pole.
        segments: vertices per ring.
        radii: ellipsoid semi-axes (x, y, z) in metres.

    Returns:
        :class:`SyntheticHead`; with the defaults V = 5023 and F = 9976.
    """
    theta_max = math.radians(150.0)  # polar angle of the last (neck) ring
    theta = torch.arange(1, rings + 1, dtype=torch.float64) * theta_max / rings
    # phi = pi (segment 0, the UV seam) at the back of the head, 0 (segment S/2) at the front;
    # x = sin(phi), z = cos(phi) keeps the faces counter-clockwise seen from outside.
    phi = math.pi + torch.arange(segments, dtype=torch.float64) * 2 * math.pi / segments
    st, ct = torch.sin(theta)[:, None], torch.cos(theta)[:, None].expand(-1, segments)
    xyz = torch.stack([st * phi.sin() * radii[0], ct * radii[1], st * phi.cos() * radii[2]], -1)
    vertices = torch.cat(
        [torch.tensor([[0.0, radii[1], 0.0]], dtype=torch.float64), xyz.view(-1, 3)]
    )
    seg = torch.arange(segments)
    faces = _fan_and_bands(rings, segments, torch.zeros_like(seg), 1, segments, wrap=True)
    # Cylindrical UVs, v from the crown down, with a seam column (u = 0 and u = 1) at the back
    # and one pole UV per fan triangle.
    pole_uv = torch.stack([(seg.double() + 0.5) / segments, torch.ones(segments).double()], 1)
    u = torch.arange(segments + 1, dtype=torch.float64) / segments
    ring_uv = torch.stack(torch.meshgrid(u, 1 - theta / theta_max * 0.98, indexing="xy"), -1)
    verts_uvs = torch.cat([pole_uv, ring_uv.reshape(-1, 2)])
    faces_uvs = _fan_and_bands(rings, segments, seg, segments, segments + 1, wrap=False)
    # The mouth slit: 3 quads (6 faces) at the front, 2/3 of the way down.
    row, half = (2 * rings) // 3, segments // 2
    quads = [segments + 2 * (row * segments + q) for q in (half - 2, half - 1, half)]
    keep = torch.ones(len(faces), dtype=torch.bool)
    keep[torch.tensor(quads)[:, None] + torch.arange(2)] = False
    return SyntheticHead(
        vertices=vertices.float(),
        faces=faces[keep],
        verts_uvs=verts_uvs.float(),
        faces_uvs=faces_uvs[keep],
    )


def head_batch(
    head: SyntheticHead, batch: int, *, seed: int = 0, fill: float = 0.7
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posed copies of the head and weak-perspective cameras that fill ``fill`` of the image.

    Returns:
        vertices (batch, V, 3) metres, each yawed/pitched by up to 30/10 degrees, and cam (batch, 3).
    """
    g = torch.Generator().manual_seed(seed)
    angles = (torch.rand(batch, 3, generator=g) * 2 - 1) * torch.tensor([0.17, 0.52, 0.05])
    verts = head.vertices[None] @ axis_angle_to_matrix(angles).transpose(1, 2)
    height = float(head.vertices[:, 1].max() - head.vertices[:, 1].min())
    scale = torch.full((batch, 1), 2 * fill / height)
    shift = (torch.rand(batch, 2, generator=g) * 2 - 1) * 0.01
    return verts, torch.cat([scale, shift], dim=1)


@dataclass(frozen=True)
class RenderBenchmark:
    """Median wall times (milliseconds) of one :func:`benchmark_render` run.

    Attributes:
        rasterize_ms: projection + rasterization.
        shade_ms: interpolation (normals, UVs), albedo sampling and SH shading.
        render_ms: the whole ``Renderer.forward``.
        backward_ms: forward + backward of a loss on the image to vertices, light and albedo.
        resnet50_ms: ResNet-50 forward (random init, eval, no_grad) on (batch, 3, 224, 224).
        ratio: render_ms / resnet50_ms.
        coverage: fraction of pixels covered by the head.
        info: torch version, threads, device, batch, image size, mesh size.
    """

    rasterize_ms: float
    shade_ms: float
    render_ms: float
    backward_ms: float
    resnet50_ms: float
    ratio: float
    coverage: float
    info: dict


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(jobs: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """Median wall time of every job; one round runs each job once, round 0 warms up."""
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for round_ in range(repeats + 1):
        for name, job in jobs.items():
            _sync(device)
            start = time.perf_counter()
            job()
            _sync(device)
            if round_ > 0:
                times[name].append((time.perf_counter() - start) * 1000)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def benchmark_render(
    *, batch: int = 8, image_size: int = 224, repeats: int = 10, device: str = "cpu", seed: int = 0
) -> RenderBenchmark:
    """Time the renderer on the synthetic head against a ResNet-50 forward on the same batch.

    Measurements are interleaved (one of each per round) so that machine load affects both
    sides alike; every figure is the median over ``repeats`` rounds after one warm-up round.
    """
    import timm  # only the benchmark needs it

    dev = torch.device(device)
    head = synthetic_head()
    renderer = Renderer(
        faces=head.faces,
        verts_uvs=head.verts_uvs,
        faces_uvs=head.faces_uvs,
        image_size=image_size,
        uv_size=256,
    ).to(dev)
    vertices, cam = (t.to(dev) for t in head_batch(head, batch, seed=seed))
    g = torch.Generator().manual_seed(seed)
    light = torch.randn(batch, 9, 3, generator=g) * 0.2
    light[:, 0] += 3.0
    light, albedo = light.to(dev), torch.rand(batch, 3, 256, 256, generator=g).to(dev)
    images = torch.rand(batch, 3, 224, 224, generator=g).to(dev)
    resnet = timm.create_model("resnet50", pretrained=False).eval().to(dev)
    with torch.no_grad():
        screen, fragments = renderer.rasterize(vertices, cam)

    def backward() -> None:
        v = vertices.detach().requires_grad_(True)
        lt, alb = light.detach().requires_grad_(True), albedo.detach().requires_grad_(True)
        renderer(v, cam, lt, alb).image.mean().backward()

    jobs = {
        "resnet": torch.no_grad()(lambda: resnet(images)),
        "raster": torch.no_grad()(lambda: renderer.rasterize(vertices, cam)),
        "shade": torch.no_grad()(
            lambda: renderer.shade(vertices, screen, fragments, light, albedo)
        ),
        "render": torch.no_grad()(lambda: renderer(vertices, cam, light, albedo)),
        "backward": backward,
    }
    med = _median_ms(jobs, repeats, dev)
    info = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(dev),
        "batch": batch,
        "image_size": image_size,
        "vertices": int(head.vertices.shape[0]),
        "faces": int(head.faces.shape[0]),
    }
    return RenderBenchmark(
        rasterize_ms=med["raster"],
        shade_ms=med["shade"],
        render_ms=med["render"],
        backward_ms=med["backward"],
        resnet50_ms=med["resnet"],
        ratio=med["render"] / med["resnet"],
        coverage=float(fragments.mask.float().mean()),
        info=info,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    r = benchmark_render(
        batch=args.batch, image_size=args.image_size, repeats=args.repeats, device=args.device
    )
    print(" ".join(f"{k}={v}" for k, v in r.info.items()) + f" coverage={r.coverage:.2f}")
    if load > 0.5 * (os.cpu_count() or 1):
        hint = " (try --threads 1)" if torch.get_num_threads() > 1 else ""
        print(
            f"warning: load average {load:.1f} on {os.cpu_count()} cores before the run; "
            f"timings are unreliable{hint}"
        )
    rows = [
        ("rasterize (project + raster)", r.rasterize_ms),
        ("interpolate + shade", r.shade_ms),
        ("total render (forward)", r.render_ms),
        ("render forward + backward", r.backward_ms),
        ("ResNet-50 forward (no_grad)", r.resnet50_ms),
    ]
    print(f"{'stage':<32}{'ms (median)':>12}")
    for name, ms in rows:
        print(f"{name:<32}{ms:>12.1f}")
    verdict = "ok" if r.ratio <= 0.25 else "over target"
    print(f"{'render / ResNet-50':<32}{r.ratio:>12.3f}  (target <= 0.25: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
