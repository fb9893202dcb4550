"""Peak resident memory of one video2mesh run: the child process of ``bench_video2mesh.py``.

    python benchmarks/video2mesh_peak_memory.py CLIP OUT [section.key=value ...]

Runs video2mesh on CLIP into OUT with configs/base.yaml and the overrides, then prints one JSON
line: ``{"frames": ..., "status": ..., "peak_mb": ...}`` (peak resident memory of this process,
MB: :func:`peak_kb`).
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

from seqdeca.config import load_config
from seqdeca.inference.pipeline import video2mesh

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> None:
    cfg = load_config(ROOT / "configs" / "base.yaml", argv[2:])
    (res,) = video2mesh([argv[0]], argv[1], cfg, progress=False)
    print(json.dumps({"frames": res.frames, "status": res.status, "peak_mb": peak_kb() / 1024}))


def peak_kb() -> float:
    """Peak resident memory of this process in kB: Linux's ``VmHWM``, else ``ru_maxrss``.

    On Linux ``ru_maxrss`` also counts the parent's memory when the child was started with
    vfork (as ``subprocess`` does), so a large benchmark process would report its own size.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(
            "usage: python benchmarks/video2mesh_peak_memory.py CLIP OUT [section.key=value ...]"
        )
    main(sys.argv[1:])
