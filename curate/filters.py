"""Filters: the scoring stages in build order, and thresholds applied to their score columns.

Scoring and deciding are separate. The stages only write score columns (for ``ok`` and ``filtered``
rows alike); :func:`apply_filters` turns scores into ``status``/``reason`` with each section's
``check``. So thresholds can be changed and re-applied to a built dataset (:func:`refilter`) without
decoding a single frame, and :func:`funnel` counts what each filter removed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from reelforge.curate.dedup import DedupConfig, apply_dedup, read_embeddings
from reelforge.curate.runner import StageSpec
from reelforge.curate.stages.aesthetic import AestheticConfig, AestheticStage
from reelforge.curate.stages.basic import BasicConfig, BasicStage
from reelforge.curate.stages.borders import BordersConfig, BordersStage
from reelforge.curate.stages.caption_match import CaptionMatchConfig
from reelforge.curate.stages.exposure import ExposureConfig, ExposureStage
from reelforge.curate.stages.motion import MotionConfig, MotionStage
from reelforge.curate.stages.nsfw import NsfwConfig, NsfwStage
from reelforge.curate.stages.text_overlay import TextOverlayConfig, TextOverlayStage

# The order filters are judged in: the first failing one names the reason. Cheap, decisive checks
# first, so the funnel charges a clip to the most basic thing wrong with it.
FILTER_ORDER = ("basic", "borders", "exposure", "motion", "aesthetic", "text_overlay", "nsfw",
                "caption_match", "dedup")

# columns the checks read (score columns of the stages, dedup's pair)
CHECK_COLUMNS = (
    "duration_s", "short_side", "fps", "aspect_ratio", "border_area",
    "exposure_mean", "exposure_dark_frac", "exposure_bright_frac", "sharpness",
    "motion_mean", "motion_jitter", "aesthetic", "text_area", "nsfw", "caption_match",
    "dedup_of", "dedup_cosine",
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
    dedup: DedupConfig = field(default_factory=DedupConfig)

    def enabled_checks(self) -> list[tuple[str, object]]:
        return [(name, getattr(self, name)) for name in FILTER_ORDER if getattr(self, name).enabled]


def build_filter_stages(cfg: FiltersConfig) -> list[StageSpec]:
    """The enabled per-clip scoring stages in build order, as (class, constructor args) specs the runner
    builds on each worker (dedup and caption match run later).

    Borders comes before the scorers that look inside its crop box (exposure, motion, text overlay).
    """
    makers = [("basic", BasicStage), ("borders", BordersStage), ("exposure", ExposureStage),
              ("motion", MotionStage), ("aesthetic", AestheticStage), ("text_overlay", TextOverlayStage),
              ("nsfw", NsfwStage)]
    return [StageSpec(make, (getattr(cfg, name),)) for name, make in makers if getattr(cfg, name).enabled]


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


def refilter(dataset_dir: str | Path, cfg: FiltersConfig) -> dict[str, int]:
    """Re-apply ``cfg``'s thresholds to ``DIR/clips.parquet`` (and re-run dedup on ``DIR/embeddings.parquet``
    over the clips that survive); rewrites the file atomically keeping every row; returns the funnel."""
    path = Path(dataset_dir) / "clips.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"no clips.parquet in {dataset_dir}")
    table = pq.read_table(path)
    # dedup depends on which clips survive the other filters, so it is recomputed, not re-checked
    for name in ("dedup_of", "dedup_cosine"):
        if name in table.column_names:
            table = table.drop_columns([name])
    table = apply_filters(table, cfg)
    emb_path = Path(dataset_dir) / "embeddings.parquet"
    if cfg.dedup.enabled and emb_path.is_file():
        table = _with_schema(apply_dedup(table, read_embeddings(emb_path), cfg.dedup), like=table)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return funnel(table)


def _with_schema(table: pa.Table, like: pa.Table) -> pa.Table:
    """Cast ``table`` back to ``like``'s types for the columns they share (pylist round trips can turn an
    all-null column into type null); dedup's own columns get fixed types."""
    fields = []
    for f in table.schema:
        if f.name in like.column_names:
            fields.append(like.schema.field(f.name))
        elif f.name == "dedup_of":
            fields.append(pa.field("dedup_of", pa.string()))
        elif f.name == "dedup_cosine":
            fields.append(pa.field("dedup_cosine", pa.float64()))
        else:
            fields.append(f)
    return table.cast(pa.schema(fields))
