"""The shipped YAML configs, as package data: ``reelforge.configs`` is this folder.

pyproject maps ``reelforge.configs`` to ``configs/`` and lists its YAML files as package data, so an
installed wheel carries them and commands find their defaults without a source tree; in a checkout the
README's ``configs/...`` paths are these same files.
"""
from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent


def config_path(relpath: str) -> Path:
    """The shipped config ``relpath`` (e.g. ``"build/default.yaml"``); FileNotFoundError naming the
    folder searched when there is none."""
    path = CONFIG_DIR / relpath
    if not path.is_file():
        raise FileNotFoundError(f"no shipped config {relpath!r} in {CONFIG_DIR}")
    return path
