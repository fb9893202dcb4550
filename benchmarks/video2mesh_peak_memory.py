"""Peak resident memory of one video2mesh run: the child process of ``bench_video2mesh.py``.

    python benchmarks/video2mesh_peak_memory.py CLIP OUT [section.key=value ...]

Runs video2mesh on CLIP into OUT with configs/base.yaml and the overrides, then prints one JSON
line: ``{"frames": ..., "status": ..., "peak_mb": ...}`` (``ru_maxrss`` of this process, MB).
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
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": res.frames, "status": res.status, "peak_mb": peak_kb / 1024}))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(
            "usage: python benchmarks/video2mesh_peak_memory.py CLIP OUT [section.key=value ...]"
        )
    main(sys.argv[1:])
