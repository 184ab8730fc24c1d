"""The report's numbers: what it reads of a build, the thresholds in its config, the funnel and the
score histograms. Everything here is plain data (``report.json`` is made of it); ``plots`` draws it and
``page`` lays it out.

Thresholds come from ``config.yaml``: :data:`THRESHOLDS` says which score column each filter key bounds
and which value switches it off; the value is read from the config. (``tests/curate/test_report.py``
holds every entry to its section's own ``check`` and fails when a filter config gains a ``min_``/``max_``
key that is in neither table.)
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from reelforge import storage
from reelforge.config import ConfigError, from_dict
from reelforge.curate.filters import CHECK_COLUMNS, FILTER_ORDER, FiltersConfig, filter_name
from reelforge.curate.stage_list import STAGES


# Score columns in pipeline order (the flat stage list): what the scoring stages add, plus dedup's cosine.
# Crop coordinates are geometry, not scores; duration/fps/resolution get their own section.
_SCORERS = tuple(e.cls for e in STAGES if e.cls is not None and e.sections and e.sections[0].startswith("filters."))
_NOT_SCORES = {"crop_x0", "crop_y0", "crop_x1", "crop_y1", "duration_s", "fps", "clip_embedding", "aesthetic_skip",
               "frame_signature", "nsfw_exposed_class"}
SCORE_COLUMNS = tuple(dict.fromkeys(
    [c for s in _SCORERS for c in s.outputs if c not in _NOT_SCORES]
    + [c for c in CHECK_COLUMNS if c not in _NOT_SCORES and c not in ("dedup_of", "near_dup_of")]))

# what the report reads of each table
CLIP_COLUMNS = tuple(dict.fromkeys(("clip_id", "video_path", "status", "reason", "shard", "work_shard", "start_s", "end_s",
                                    "duration_s", "width", "height", "fps", "num_frames")
                                   + SCORE_COLUMNS + tuple(CHECK_COLUMNS)))
VIDEO_COLUMNS = ("path", "status", "reason", "duration_s", "width", "height", "fps", "codec", "num_clips",
                 "num_clips_ok")


# ---- loading --------------------------------------------------------------------------------------

def read_rows(path: Path | str, notes: list[str], columns: tuple[str, ...]) -> tuple[list[dict], pa.Schema | None]:
    """The rows of a parquet file (a local path or a URL), only ``columns`` (those it has): captions,
    embeddings and frame lists stay in storage, so a large dataset's report does not hold every column of
    every clip in memory."""
    name = storage.basename(path)
    if not storage.exists(path):
        notes.append(f"no {name}")
        return [], None
    try:
        have = set(storage.read_parquet_schema(path).names)
        table = storage.read_parquet(path, columns=[c for c in columns if c in have])
    except Exception as exc:  # a torn file still gets a report that says so
        notes.append(f"{name} unreadable: {type(exc).__name__}: {exc}")
        return [], None
    return table.to_pylist(), table.schema


def read_json(path: Path | str, notes: list[str]) -> dict:
    try:
        return json.loads(storage.read_bytes(path)) if storage.exists(path) else {}
    except (OSError, ValueError) as exc:
        notes.append(f"{storage.basename(path)} unreadable: {exc}")
        return {}


# ---- thresholds -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bound:
    column: str   # score column it bounds
    section: str  # filter section in config.yaml
    key: str      # config key, e.g. min_motion
    kind: str     # "min": lower values are removed; "max": higher values are removed
    value: float



# filter section -> (config key, score column it bounds, the key's value that means "no bound" or None).
# "min" keys remove clips below the value, "max" keys above it.
THRESHOLDS: dict[str, tuple[tuple[str, str, float | None], ...]] = {
    "basic": (("min_duration_s", "duration_s", None), ("max_duration_s", "duration_s", 0.0),
              ("min_short_side", "short_side", None), ("min_fps", "fps", None), ("max_fps", "fps", None),
              ("min_aspect", "aspect_ratio", None), ("max_aspect", "aspect_ratio", None)),
    "borders": (("max_border_area", "border_area", None),),
    "exposure": (("min_mean", "exposure_mean", None), ("max_mean", "exposure_mean", None),
                 ("max_dark_frac", "exposure_dark_frac", None), ("max_bright_frac", "exposure_bright_frac", None),
                 ("min_sharpness", "sharpness", None)),
    "motion": (("min_motion", "motion_mean", None), ("max_motion", "motion_mean", 0.0),
               ("max_jitter", "motion_jitter", 0.0)),
    "aesthetic": (("min_score", "aesthetic", None),),
    "text_overlay": (("max_text_area", "text_area", None), ("max_text_boxes", "text_boxes", 0.0),
                     ("max_text_box", "text_box_max", 1.0)),
    # max_nsfw removes a clip only where NudeNet agrees (or where NudeNet never scored it)
    "nsfw": (("max_exposed", "nsfw_exposed", None), ("max_nsfw", "nsfw", None), ("max_nsfw_alone", "nsfw", 1.0)),
    "caption_match": (("min_similarity", "caption_match", None),),
    "dedup": (("threshold", "dedup_cosine", None),),  # a copy at or above this cosine is removed
}
# min_/max_ keys of filter configs that are no bound on a clip's score column (pair criteria, search
# limits, per-box settings)
NOT_BOUNDS = {
    "text_overlay": {"min_read_score", "max_read_ratio", "min_aspect"},  # per-box reading settings
    "near_dup": {"max_hamming", "max_color_diff", "min_overlap", "min_ticks", "max_bucket"},
    "dedup": {"max_bucket"},
}


def filter_sections(config: dict, notes: list[str]) -> dict[str, object]:
    """Enabled filter sections of ``config.yaml`` as their config dataclasses (a bad section is noted, skipped)."""
    hints = typing.get_type_hints(FiltersConfig)
    raw = ((config.get("curate") or {}).get("filters") or {}) if isinstance(config, dict) else {}
    out = {}
    for name in FILTER_ORDER:
        if name not in raw:
            continue
        try:
            section = from_dict(hints[name], raw[name], prefix=f"curate.filters.{name}")
        except ConfigError as exc:
            notes.append(f"config section curate.filters.{name} not understood ({exc}): its thresholds are not drawn")
            continue
        if section.enabled:
            out[name] = section
    return out


def section_bounds(name: str, section) -> list[Bound]:
    """The bounds filter section ``name`` enforces with its current values (switched-off keys left out)."""
    bounds = []
    for key, column, off in THRESHOLDS.get(name, ()):
        value = float(getattr(section, key))
        if off is not None and value == off:
            continue
        kind = "max" if key == "threshold" else key.split("_", 1)[0]
        bounds.append(Bound(column, name, key, kind, value))
    return bounds


# ---- numbers --------------------------------------------------------------------------------------

# ---- numbers --------------------------------------------------------------------------------------

def funnel_numbers(clips: list[dict], videos: list[dict], summary: dict) -> dict:
    """Planned clips -> removals per filter in pipeline order -> failed -> kept, and whether it adds up."""
    status = Counter(r.get("status") for r in clips)
    removed_all = Counter(filter_name(r.get("reason")) for r in clips if r.get("status") == "filtered")
    # stages outside FILTER_ORDER (the splitter dropping short spans) act before any filter
    order = [n for n in removed_all if n not in FILTER_ORDER] + list(FILTER_ORDER)
    removed = {n: removed_all.get(n, 0) for n in order}
    planned, kept, failed = len(clips), status.get("ok", 0), status.get("failed", 0)
    other = {str(k): v for k, v in status.items() if k not in ("ok", "filtered", "failed")}
    warnings = []
    if planned != kept + sum(removed.values()) + failed:
        warnings.append(f"planned {planned} != kept {kept} + removed {sum(removed.values())} + failed {failed}"
                        f" (rows with other statuses: {other})")
    if summary:
        # summary.json is written with clips.parquet (build and --refilter): they must agree
        want = {"planned": summary.get("clips"), "kept": summary.get("clips_ok")}
        want.update({f"removed by {k}": v for k, v in (summary.get("funnel") or {}).items()})
        have = {"planned": planned, "kept": kept, **{f"removed by {k}": v for k, v in removed.items()}}
        for k, v in want.items():
            if v is not None and have.get(k, 0) != v:
                warnings.append(f"summary.json says {k} = {v}, clips.parquet has {have.get(k, 0)}")
    if videos and any("num_clips" in v for v in videos):
        per_video = sum(int(v.get("num_clips") or 0) for v in videos)
        if per_video != planned:
            warnings.append(f"videos.parquet num_clips sums to {per_video}, clips.parquet has {planned} rows")
    failed_by = Counter(str(r.get("reason") or "?").split(":", 1)[0] for r in clips if r.get("status") == "failed")
    return {"planned": planned, "removed": removed, "failed": failed, "failed_by_stage": dict(failed_by),
            "kept": kept, "adds_up": not warnings, "warnings": warnings}


def _finite(values) -> np.ndarray:
    a = np.array([float(v) for v in values if v is not None and not isinstance(v, (str, bool))], dtype=float)
    return a[np.isfinite(a)]


def histogram(clips: list[dict], column: str, bounds: list[Bound], bins: int = 30) -> dict | None:
    """Counts of kept and removed clips per bin (failed clips have no scores), on a log axis when the
    values span more than three decades (motion); the x range stretches to show nearby thresholds."""
    rows = [r for r in clips if r.get("status") in ("ok", "filtered")]
    kept = _finite(r.get(column) for r in rows if r.get("status") == "ok")
    gone = _finite(r.get(column) for r in rows if r.get("status") == "filtered")
    allv = np.concatenate([kept, gone])
    if allv.size == 0:
        return None
    pos = allv[allv > 0]
    log = bool(allv.min() >= 0 and pos.size and pos.size >= allv.size / 2 and pos.max() / pos.min() > 1e3)
    floor = float(pos.min()) if log else 0.0
    f = (lambda x: np.log10(np.maximum(x, floor))) if log else (lambda x: x)
    lo, hi = float(f(allv).min()), float(f(allv).max())
    span = hi - lo or (abs(lo) * 0.2 or 1.0)
    if hi == lo:  # one value: centre it in a bin of its own
        lo, hi = lo - span / 2, hi + span / 2
    for b in bounds:  # a threshold within half a span of the data is worth seeing in place
        v = (math.log10(b.value) if b.value > 0 else None) if log else b.value
        if v is not None and lo - span / 2 <= v <= hi + span / 2:
            lo, hi = min(lo, v), max(hi, v)
    edges = np.linspace(lo, hi, bins + 1)
    q = np.quantile(allv, [0.05, 0.5, 0.95])
    return {"column": column, "log": log, "edges": edges.tolist(),
            "kept": np.histogram(np.clip(f(kept), lo, hi), edges)[0].tolist() if kept.size else [0] * bins,
            "removed": np.histogram(np.clip(f(gone), lo, hi), edges)[0].tolist() if gone.size else [0] * bins,
            "n": int(allv.size), "zeros_in_first_bin": int((allv <= 0).sum()) if log else 0,
            "min": float(allv.min()), "p5": float(q[0]), "median": float(q[1]), "p95": float(q[2]),
            "max": float(allv.max()), "mean": float(allv.mean()),
            "thresholds": [dataclasses.asdict(b) for b in bounds]}


def numeric_columns(schema: pa.Schema | None) -> set[str]:
    if schema is None:
        return set()
    return {f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)}

