"""Peak resident memory of one video2mesh run: the child process of ``bench_video2mesh.py``.

    python benchmarks/video2mesh_peak_memory.py CLIP OUT [section.key=value ...]

Runs video2mesh on CLIP into OUT with configs/base.yaml and the overrides, then prints one JSON
line: ``{"frames": ..., "status": ..., "peak_mb": ..., "rss_quarters_mb": [...]}`` (peak resident
memory of this process, MB: :func:`peak_kb`; the highest resident memory in each quarter of the
run: :class:`RssSampler`).
"""

from __future__ import annotations

import json
import resource
import sys
import threading
from pathlib import Path

import numpy as np

from seqdeca.config import load_config
from seqdeca.inference.pipeline import video2mesh

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> None:
    cfg = load_config(ROOT / "configs" / "base.yaml", argv[2:])
    sampler = RssSampler()
    sampler.start()
    (res,) = video2mesh([argv[0]], argv[1], cfg, progress=False)
    sampler.stop()
    info = {"frames": res.frames, "status": res.status, "peak_mb": peak_kb() / 1024}
    print(json.dumps({**info, "rss_quarters_mb": sampler.quarters_mb()}))


class RssSampler(threading.Thread):
    """Samples this process's resident memory (``VmRSS``, Linux) every ``interval`` seconds."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples_kb: list[float] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        status = Path("/proc/self/status")
        while not self._stop_event.wait(self.interval) and status.is_file():
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.samples_kb.append(float(line.split()[1]))

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def quarters_mb(self) -> list[float]:
        """The highest sample in each quarter of the run, MB (empty without samples): a flat
        tail means memory stopped growing with the clip."""
        parts = [p for p in np.array_split(np.asarray(self.samples_kb), 4) if p.size]
        return [round(float(p.max()) / 1024, 1) for p in parts]


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
