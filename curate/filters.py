"""Filters: thresholds applied to the score columns of the scoring stages.

Scoring and deciding are separate. The stages only write score columns (for ``ok`` and ``filtered``
rows alike); :func:`apply_filters` turns scores into ``status``/``reason`` with each section's
``check``, in the order of the flat stage list (``curate/stage_list.py``). So thresholds can be changed
and re-applied to a built dataset (``build --refilter``, which re-runs the build's finish) without
decoding a single frame, and :func:`funnel` counts what each filter removed.
"""
from __future__ import annotations

import types
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from reelforge.curate.dedup import DedupConfig, apply_dedup
from reelforge.curate.near_dup import NearDupConfig, apply_near_dup
from reelforge.curate.runner import StageSpec
from reelforge.curate.stage_list import FILTER_NAMES, runnable, skipped, stage_args
from reelforge.curate.stages.aesthetic import AestheticConfig
from reelforge.curate.stages.basic import BasicConfig
from reelforge.curate.stages.borders import BordersConfig
from reelforge.curate.stages.caption_match import CaptionMatchConfig
from reelforge.curate.stages.exposure import ExposureConfig
from reelforge.curate.stages.motion import MotionConfig
from reelforge.curate.stages.nsfw import NsfwConfig
from reelforge.curate.stages.text_overlay import TextOverlayConfig

# The order filters are judged in (the stage list's order): the first failing one names the reason.
FILTER_ORDER = FILTER_NAMES

# columns the checks read (score columns of the stages, dedup's pair)
CHECK_COLUMNS = (
    "duration_s", "short_side", "fps", "aspect_ratio", "border_area",
    "exposure_mean", "exposure_dark_frac", "exposure_bright_frac", "sharpness",
    "motion_mean", "motion_jitter", "aesthetic", "text_area", "text_boxes", "text_box_max",
    "nsfw", "nsfw_exposed", "nsfw_exposed_class", "caption_match",
    "dedup_of", "dedup_cosine", "near_dup_of", "near_dup_hamming", "near_dup_overlap",
    "removed_early", "unscored",  # the model stages' skips (curate/stage.py REMOVED_EARLY)
)


@dataclass
class FiltersConfig:
    basic: BasicConfig = field(default_factory=BasicConfig)
    borders: BordersConfig = field(default_factory=BordersConfig)
    exposure: ExposureConfig = field(default_factory=ExposureConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    aesthetic: AestheticConfig = field(default_factory=AestheticConfig)
    text_overlay: TextOverlayConfig = field(default_factory=TextOverlayConfig)
    nsfw: NsfwConfig = field(default_factory=NsfwConfig)
    caption_match: CaptionMatchConfig = field(default_factory=CaptionMatchConfig)
    near_dup: NearDupConfig = field(default_factory=NearDupConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)

    def enabled_checks(self) -> list[tuple[str, object]]:
        return [(name, getattr(self, name)) for name in FILTER_ORDER if getattr(self, name).enabled]


def build_filter_stages(cfg: FiltersConfig) -> list[StageSpec]:
    """The runnable per-clip scoring stages in stage-list order, as (class, constructor args) specs the
    runner builds on each worker (dedup runs at the end, over all clips)."""
    curate = types.SimpleNamespace(filters=cfg)
    return [StageSpec(e.cls, stage_args(e, curate)) for e in runnable(curate, "clip", within="filters.")]


def filter_name(reason: str | None) -> str:
    """``"motion: motion_mean=... < min ..."`` -> ``"motion"``."""
    return (reason or "").split(":", 1)[0].strip() or "unknown"


def decide(row: dict, cfg: FiltersConfig) -> tuple[str, str | None]:
    """(status, reason) for one row from its scores. ``failed`` rows, and rows filtered by a stage that is
    not one of these filters (e.g. the scene splitter), keep what they have."""
    status, reason = row.get("status") or "ok", row.get("reason")
    if status == "failed" or (status == "filtered" and filter_name(reason) not in FILTER_ORDER):
        return status, reason
    for _, section in cfg.enabled_checks():
        why = section.check(row)
        if why:
            return "filtered", why
    # left unscored by a model stage because a cheaper filter removed it at build time, and that filter
    # has been loosened since: without the score it cannot pass (curate/stage.py REMOVED_EARLY)
    skip = skipped(types.SimpleNamespace(filters=cfg))
    unscored = [n for n in str(row.get("unscored") or "").split(",")
                if n in FILTER_ORDER and getattr(cfg, n).enabled and n not in skip]
    if unscored:
        return "filtered", (f"{unscored[0]}: not scored: the build removed this clip first ({row.get('removed_early')}); "
                            f"to score such clips set score_removed: true on that filter and --rebuild")
    return "ok", None


def apply_filters(rows: list[dict] | pa.Table, cfg: FiltersConfig) -> list[dict] | pa.Table:
    """Set ``status``/``reason`` from the score columns (dedup included when ``dedup_of`` is present).

    A list of row dicts comes back as new dicts; a table comes back with the same schema and only its
    ``status`` and ``reason`` columns replaced (only the columns the checks read are materialised).
    """
    if isinstance(rows, pa.Table):
        table = rows
        needed = [c for c in (*CHECK_COLUMNS, "status", "reason") if c in table.column_names]
        light = table.select(needed).to_pylist()
        decided = [decide(r, cfg) for r in light]
        statuses = pa.array([s for s, _ in decided], pa.string())
        reasons = pa.array([r for _, r in decided], pa.string())
        for name, col in (("status", statuses), ("reason", reasons)):
            if name in table.column_names:
                table = table.set_column(table.schema.get_field_index(name), name, col)
            else:
                table = table.append_column(name, col)
        return table
    out = []
    for r in rows:
        status, reason = decide(r, cfg)
        out.append({**r, "status": status, "reason": reason})
    return out


def funnel(rows: list[dict] | pa.Table) -> dict[str, int]:
    """Clips removed per filter, every filter of FILTER_ORDER listed (0 when it removed none); clips
    filtered by other stages appear under their stage name after them."""
    if isinstance(rows, pa.Table):
        cols = [c for c in ("status", "reason") if c in rows.column_names]
        rows = rows.select(cols).to_pylist()
    counts = {name: 0 for name in FILTER_ORDER}
    for r in rows:
        if r.get("status") == "filtered":
            name = filter_name(r.get("reason"))
            counts[name] = counts.get(name, 0) + 1
    return counts


# columns of a dataset-wide decision (which clip is a duplicate of which)
_PAIR_COLUMNS = ("dedup_of", "dedup_cosine", "near_dup_of", "near_dup_hamming", "near_dup_overlap")


def decide_all(rows: list[dict], cfg: FiltersConfig, embeddings: Path | None,
               signatures: Path | None = None) -> list[dict]:
    """Statuses from scores: the thresholds, then (when enabled and the file exists) near-duplicates by
    frame ``signatures`` and embedding dedup by ``embeddings``, each over the clips that survive. Dedup columns of an earlier decision are dropped first: which clip
    is a duplicate depends on which clips survive, so it is recomputed, never re-checked."""
    rows = [{k: v for k, v in r.items() if k not in _PAIR_COLUMNS} for r in rows]
    rows = apply_filters(rows, cfg)
    # near-duplicates by frame signature (no weights) first: the cheap, exact-footage test
    if not any(r["status"] == "ok" for r in rows):
        return rows  # nothing survives the thresholds: nothing can be a duplicate of anything
    if cfg.near_dup.enabled and signatures is not None and Path(signatures).is_file():
        rows = apply_near_dup(rows, signatures, cfg.near_dup)
    if cfg.dedup.enabled and embeddings is not None and Path(embeddings).is_file():
        rows = apply_dedup(rows, embeddings, cfg.dedup)
    return rows
