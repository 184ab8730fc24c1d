"""Find the input videos of a build: a folder (recursive), glob patterns, or a list file.

Local paths and fsspec URLs (``s3://bucket/raw/``, ``gs://…``, ``file://…``) go through the same code.
Every file found is returned — including ones that turn out not to be video — so that each input ends
with a row in ``videos.parquet``; only sidecars (captions, ground truth) and hidden files are skipped,
and files the config excludes (``include``, ``exclude_globs``).

Whatever the user names and cannot become an input is *skipped with a reason*, never dropped silently:
a path or ``@list`` entry that does not exist, a glob that matches nothing, a broken symlink, a
directory named like a video (``x.mp4/``), a fifo or device, an unreadable file or list, a folder with
no input files. The build writes these as ``failed`` rows of ``videos.parquet``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from fnmatch import fnmatch

import fsspec

from reelforge import storage

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


@dataclass
class Discovered:
    """The input files (sorted, unique) and one failed row per named thing that is not one."""

    paths: list[str] = field(default_factory=list)
    # {"path", "status": "failed", "reason": "discover: …"}: written to videos.parquet by the build
    skipped: list[dict] = field(default_factory=list)

    def skip(self, path: str, why: str, listed_in: str = "") -> None:
        where = f" (listed in {listed_in})" if listed_in else ""
        self.skipped.append({"path": path, "status": "failed", "reason": f"discover: {why}{where}"})


def _is_candidate(path: str, cfg: DiscoverConfig) -> bool:
    name = path.rsplit("/", 1)[-1]
    lower = name.lower()
    if name.startswith(".") or lower.endswith(SIDECAR_EXTS):
        return False
    if cfg.include == "video" and not lower.endswith(VIDEO_EXTS):
        return False
    return not any(fnmatch(path, g) or fnmatch(name, g) for g in cfg.exclude_globs)


def _unstrip(fs, path: str, original: str) -> str:
    """fsspec strips the protocol; put it back for remote filesystems so later stages can reopen it."""
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if proto in ("file", "local") or "://" not in original:
        return path
    return f"{proto}://{path}"


def _is_local(fs) -> bool:
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return proto in ("file", "local")


def _not_a_file(fs, path: str, info: dict) -> str | None:
    """Why the entry ``info`` (from ``fs.info``/``find(detail=True)``) is no input file, or None if it is one."""
    kind = info.get("type")
    if kind == "directory":
        return "is a directory, not a video file" if path.lower().endswith(VIDEO_EXTS) else "is a directory"
    if info.get("islink") and not fs.exists(path):
        return f"broken symlink (points to {info.get('destination', '?')}, which does not exist)"
    if kind == "other" and not info.get("islink"):
        return "not a regular file (a fifo, socket or device)"
    if info.get("islink") and fs.isdir(path):
        return "symlink to a directory (name the directory itself)"
    if _is_local(fs) and not os.access(path, os.R_OK):
        return "not readable (permission denied)"
    return None


def discover_inputs(inputs: list[str], cfg: DiscoverConfig | None = None) -> Discovered:
    """Expand folders, globs and ``@list.txt`` files into input paths plus the named entries skipped.

    Raises :class:`reelforge.storage.StorageError` before listing anything when a named input can never
    be read (unknown URL scheme, its fsspec package missing, its bucket unreachable), and
    FileNotFoundError (with every skip reason) when nothing at all is found."""
    cfg = cfg or DiscoverConfig()
    out = Discovered()
    for spec in inputs:
        storage.check_input_url(spec)
    for spec in inputs:
        _expand(spec, cfg, out, listed_in="")
    out.paths = sorted(set(out.paths))
    seen: set[str] = set()
    out.skipped = [s for s in out.skipped if not (s["path"] in seen or seen.add(s["path"]))]
    if not out.paths:
        reasons = "; ".join(f"{s['path']}: {s['reason'].removeprefix('discover: ')}" for s in out.skipped)
        raise FileNotFoundError(f"input not found: {reasons or 'no inputs given'}")
    return out


def discover(inputs: list[str], cfg: DiscoverConfig | None = None) -> list[str]:
    """The input paths of :func:`discover_inputs` (sorted, de-duplicated)."""
    return discover_inputs(inputs, cfg).paths


def _expand(spec: str, cfg: DiscoverConfig, out: Discovered, listed_in: str) -> None:
    if spec.startswith("@"):  # a list file: one path or URL per line
        try:
            with fsspec.open(spec[1:], "r") as f:
                lines = [ln.strip() for ln in f]
        except (OSError, UnicodeDecodeError) as exc:
            out.skip(spec, f"cannot read list file: {type(exc).__name__}: {exc}", listed_in)
            return
        entries = [(n, ln) for n, ln in enumerate(lines, 1) if ln and not ln.startswith("#")]
        if not entries:
            out.skip(spec, "list file names no input", listed_in)
        for n, entry in entries:
            try:
                storage.check_input_url(entry)
            except storage.StorageError as exc:  # one bad line is that line's failed row, not a failed build
                out.skip(entry, str(exc), f"{spec[1:]} line {n}")
                continue
            _expand(entry, cfg, out, listed_in=f"{spec[1:]} line {n}")
        return
    try:
        _expand_path(spec, cfg, out, listed_in)
    except OSError as exc:  # listing refused (permissions, a remote error): the named thing is skipped, with why
        out.skip(spec, f"cannot list: {type(exc).__name__}: {exc}", listed_in)


def _expand_path(spec: str, cfg: DiscoverConfig, out: Discovered, listed_in: str) -> None:
    fs, _, paths = fsspec.get_fs_token_paths(spec)
    if any(ch in spec for ch in "*?["):
        if not paths:
            out.skip(spec, "glob matches no file", listed_in)
        for p in paths:
            why = _not_a_file(fs, p, fs.info(p))
            if why and why != "is a directory":
                out.skip(_unstrip(fs, p, spec), why, listed_in)
            elif not why and _is_candidate(p, cfg):
                out.paths.append(_unstrip(fs, p, spec))
        return
    root = paths[0] if paths else spec
    if not fs.exists(root):
        if _is_local(fs) and os.path.islink(root):
            out.skip(spec, f"broken symlink (points to {os.readlink(root)}, which does not exist)", listed_in)
        else:
            out.skip(spec, "not found", listed_in)
        return
    if not fs.isdir(root):
        why = _not_a_file(fs, root, fs.info(root))
        if why:
            out.skip(spec, why, listed_in)
        else:
            out.paths.append(_unstrip(fs, root, spec))  # an explicitly named file is always an input
        return
    before = len(out.paths)
    for p, info in sorted(fs.find(root, withdirs=True, detail=True).items()):
        if p == root:
            continue
        why = _not_a_file(fs, p, info)
        if why == "is a directory":  # an ordinary sub-folder: its files are listed on their own
            continue
        if why:
            if _is_candidate(p, cfg):  # only what would have been an input (not a hidden or sidecar name)
                out.skip(_unstrip(fs, p, spec), why, listed_in)
        elif _is_candidate(p, cfg):
            out.paths.append(_unstrip(fs, p, spec))
    if len(out.paths) == before:
        out.skip(spec, "folder holds no input file", listed_in)
