"""Shared fixtures: the ../shared folder (skipped cleanly when absent) and generated sample videos."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import av  # noqa: F401  (PyAV before any test imports decord: see reelforge/__init__.py)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REELFORGE_SHARED", ROOT.parent / "shared"))

# a bug in a stage (anything but the ValueError/OSError a stage raises for bad input) fails the test
# instead of becoming a failed row (see curate/stage.py); Ray workers get it from the runner
os.environ.setdefault("REELFORGE_STAGE_ERRORS", "reraise")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "media").is_dir():
        pytest.skip(f"../shared is absent ({SHARED}): real-media tests need it beside the checkout")
    return SHARED


@pytest.fixture(scope="session")
def shared_media(shared_dir) -> Path:
    return shared_dir / "media"


@pytest.fixture(scope="session")
def ground_truth(shared_media) -> dict:
    return json.loads((shared_media / "GROUND_TRUTH.json").read_text())
