"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

# ../shared/data next to the repository (absent in a plain clone).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_clips() -> Path:
    clips = SHARED_DATA / "clips"
    if not clips.is_dir():
        pytest.skip(
            f"sample clips not found at {clips} (../shared/data is absent in a plain clone)"
        )
    return clips
