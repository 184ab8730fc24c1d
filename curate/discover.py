"""Find the input videos of a build: a folder (recursive), glob patterns, or a list file.

Local paths and fsspec URLs (``s3://bucket/raw/``, ``gs://…``, ``file://…``) go through the same code.
Every file found is returned — including ones that turn out not to be video — so that each input ends
with a row in ``videos.parquet``; only sidecars (captions, ground truth) and hidden files are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import fsspec

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp")
SIDECAR_EXTS = (".txt", ".json", ".srt", ".vtt", ".ass", ".md")


@dataclass
class DiscoverConfig:
    # "video": only known video extensions; "all": every non-sidecar file (unknown files get a failed row)
    include: str = "all"
    exclude_globs: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.include not in ("video", "all"):
            raise ValueError(f"include must be 'video' or 'all', got {self.include!r}")


def _is_candidate(path: str, cfg: DiscoverConfig) -> bool:
    name = path.rsplit("/", 1)[-1]
    lower = name.lower()
    if name.startswith(".") or lower.endswith(SIDECAR_EXTS):
        return False
    if cfg.include == "video" and not lower.endswith(VIDEO_EXTS):
        return False
    from fnmatch import fnmatch
    return not any(fnmatch(path, g) or fnmatch(name, g) for g in cfg.exclude_globs)


def _unstrip(fs, path: str, original: str) -> str:
    """fsspec strips the protocol; put it back for remote filesystems so later stages can reopen it."""
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if proto in ("file", "local") or "://" not in original:
        return path
    return f"{proto}://{path}"


def discover(inputs: list[str], cfg: DiscoverConfig | None = None) -> list[str]:
    """Expand folders, globs and ``@list.txt`` files into a sorted, de-duplicated list of input paths."""
    cfg = cfg or DiscoverConfig()
    found: list[str] = []
    for spec in inputs:
        if spec.startswith("@"):  # a list file: one path or URL per line
            with fsspec.open(spec[1:], "r") as f:
                lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
            found.extend(discover(lines, cfg) if lines else [])
            continue
        fs, _, paths = fsspec.get_fs_token_paths(spec)
        if any(ch in spec for ch in "*?["):
            found.extend(_unstrip(fs, p, spec) for p in paths if fs.isfile(p) and _is_candidate(p, cfg))
            continue
        if not paths or not fs.exists(paths[0]):
            raise FileNotFoundError(f"input not found: {spec}")
        root = paths[0]
        if fs.isdir(root):
            for p in fs.find(root):
                if _is_candidate(p, cfg):
                    found.append(_unstrip(fs, p, spec))
        else:
            found.append(_unstrip(fs, root, spec))  # an explicitly named file is always an input
    return sorted(set(found))
