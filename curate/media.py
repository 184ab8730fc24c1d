"""Opening inputs: local paths as they are, fsspec URLs fetched once to a local temp file.

decord and PyAV need a seekable local file; remote inputs (``s3://…``) are copied to a scratch dir
first. The copy is removed when the context exits.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import fsspec


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    if not is_remote(path):
        yield path[len("file://"):] if path.startswith("file://") else path
        return
    tmpdir = tempfile.mkdtemp(prefix="reelforge-")
    local = os.path.join(tmpdir, Path(path).name)
    try:
        with fsspec.open(path, "rb") as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, 8 << 20)
        yield local
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def sha256_file(path: str, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_sidecar_caption(path: str) -> str:
    """The caption written next to an input video (``clip.mp4`` → ``clip.txt``), or ''."""
    stem = path.rsplit(".", 1)[0]
    try:
        with fsspec.open(stem + ".txt", "r", encoding="utf-8") as f:
            return f.read().strip()
    except (FileNotFoundError, OSError, UnicodeDecodeError):
        return ""
