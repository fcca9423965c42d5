"""Shared fixtures: the real-data folder (skipped when absent) and temporary lakes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FLOWHAWK_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data; skips the calling test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (set FLOWHAWK_SHARED_DATA or add ../shared/data)")
    return path


@pytest.fixture
def shared_data() -> Path:
    return shared_path()


from tests.prefect_fixtures import prefect_harness  # noqa: E402,F401  (one Prefect server per session)
