"""Shared test fixtures: where the upstream goldens and real beatmaps live."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MAPPERATOR_SHARED", REPO.parent / "shared"))
UPSTREAM = SHARED / "fixtures" / "upstream"
BEATMAPS = SHARED / "data" / "beatmaps"
EDGE_CASES = SHARED / "data" / "edge-cases"
ASC_MUSIC = Path("/usr/share/games/asc/music")

_NO_SHARED = (
    f"golden data not found at {SHARED}: check out the shared fixtures beside this repository "
    "(../shared) or point MAPPERATOR_SHARED at them"
)


def need(path: Path) -> Path:
    """Skip the calling test, saying why, when a shared data file is absent."""
    if not path.exists():
        if not SHARED.exists():
            pytest.skip(_NO_SHARED)
        pytest.skip(f"{path} is missing from the shared fixtures")
    return path


@pytest.fixture(scope="session")
def upstream() -> Path:
    return need(UPSTREAM)


@pytest.fixture(scope="session")
def beatmaps_dir() -> Path:
    return need(BEATMAPS)


@pytest.fixture(scope="session")
def edge_cases_dir() -> Path:
    return need(EDGE_CASES)


@pytest.fixture(scope="session")
def asc_songs() -> list[Path]:
    songs = sorted(ASC_MUSIC.glob("*.mp3"))
    if not songs:
        pytest.skip("Debian's asc-music is not installed (apt-get install asc-music; .ci/run does this)")
    return songs
