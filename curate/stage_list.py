"""The one flat list of build stages: it drives execution, the order filters decide in, and the report.

Read top to bottom, ``STAGES`` is the build. Each entry names a stage, the phase it runs in and the
config sections its constructor takes (paths under ``curate``):

- ``video`` stages run on Ray, one row per input file (probe, shot split);
- ``driver`` steps run in the build process between the phases (exact duplicates, the clip plan);
- ``clip`` stages run on Ray, one row per planned clip (transcode, then the scorers);
- ``dataset`` steps run once over all clips at the end (embedding dedup).

An entry whose first section has a ``check`` method is a *filter*: after scoring, ``filters.decide``
asks the enabled filters in this list's order, and the first that objects names the clip's reason
(so the funnel charges a clip to the earliest thing wrong with it). The report draws its funnel,
histograms and contact-sheet groups in the same order.

Before Ray starts, :func:`check_columns` walks the list and verifies that every enabled stage's declared
``inputs`` are made by an earlier stage (a config-time error otherwise); :func:`skipped` names every
enabled stage that cannot run with this config (no weights), so the summary and report record why it
did nothing instead of it silently not filtering.

Adding a stage is one line here (plus its config field in the section dataclass).
"""
from __future__ import annotations

from dataclasses import dataclass

from reelforge.config import ConfigError
from reelforge.curate.stage import Stage
from reelforge.curate.stages.aesthetic import AestheticStage
from reelforge.curate.stages.basic import BasicStage
from reelforge.curate.stages.borders import BordersStage
from reelforge.curate.stages.caption_match import CaptionMatchStage
from reelforge.curate.stages.exposure import ExposureStage
from reelforge.curate.stages.motion import MotionStage
from reelforge.curate.stages.nsfw import NsfwStage
from reelforge.curate.stages.probe import Probe
from reelforge.curate.stages.scene_split import SceneSplit
from reelforge.curate.stages.signature import SignatureStage
from reelforge.curate.stages.text_overlay import TextOverlayStage
from reelforge.curate.stages.transcode import Transcode

# what a video row holds before any stage, and what the clip plan (pipeline.plan_clip_rows) makes of it
VIDEO_SEED_COLUMNS = ("path", "status", "reason")
PLAN_COLUMNS = ("video_path", "video_sha256", "src_width", "src_height", "src_fps", "rotation", "sar", "src_codec",
                "src_bit_rate",
                "clip_id", "clip_index", "caption", "caption_source", "start_frame", "end_frame", "start_s",
                "end_s", "cut_before", "cut_after", "transition_before", "start_pts", "end_pts", "status", "reason")


@dataclass(frozen=True)
class StageEntry:
    name: str                      # also the reason prefix of the rows it filters or fails
    phase: str                     # video | driver | clip | dataset
    cls: type[Stage] | None        # None: a step the build process runs itself
    sections: tuple[str, ...] = ()  # config paths under `curate`, handed to the constructor in order
    inputs: tuple[str, ...] = ()   # driver/dataset steps declare their columns here (stages on the class)
    outputs: tuple[str, ...] = ()

    def needs(self) -> tuple[str, ...]:
        return self.cls.inputs if self.cls else self.inputs

    def makes(self) -> tuple[str, ...]:
        return self.cls.outputs if self.cls else self.outputs


STAGES: tuple[StageEntry, ...] = (
    StageEntry("probe", "video", Probe, ("probe",)),
    StageEntry("scene_split", "video", SceneSplit, ("scenes", "split")),
    StageEntry("exact_dedup", "driver", None, inputs=("sha256",), outputs=("duplicate_of",)),
    StageEntry("plan", "driver", None, inputs=("sha256", "clip_spans"), outputs=PLAN_COLUMNS),
    StageEntry("transcode", "clip", Transcode, ("transcode",)),
    StageEntry("basic", "clip", BasicStage, ("filters.basic",)),
    # borders before the scorers that look inside its crop box (exposure, motion, text overlay)
    StageEntry("borders", "clip", BordersStage, ("filters.borders",)),
    StageEntry("exposure", "clip", ExposureStage, ("filters.exposure",)),
    StageEntry("motion", "clip", MotionStage, ("filters.motion",)),
    StageEntry("aesthetic", "clip", AestheticStage, ("filters.aesthetic",)),
    StageEntry("text_overlay", "clip", TextOverlayStage, ("filters.text_overlay",)),
    StageEntry("nsfw", "clip", NsfwStage, ("filters.nsfw",)),
    StageEntry("caption_match", "clip", CaptionMatchStage, ("filters.caption_match",)),
    # frame signatures (no weights); near-duplicates are decided over all clips at the end
    # (filters.decide_all), before embedding dedup
    StageEntry("near_dup", "clip", SignatureStage, ("filters.near_dup",)),
    StageEntry("dedup", "dataset", None, ("filters.dedup",), inputs=("clip_embedding",),
               outputs=("dedup_of", "dedup_cosine")),
)

# skipped stages that still run (to record per-row why they did not score)
RUNS_WHEN_SKIPPED = ("aesthetic",)

FILTER_NAMES = tuple(e.name for e in STAGES if e.sections and e.sections[0].startswith("filters."))


class StageListError(ConfigError):
    """The enabled stages do not fit together (a column nobody makes); raised before Ray starts."""


def section(curate_cfg, path: str):
    obj = curate_cfg
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def is_enabled(entry: StageEntry, curate_cfg) -> bool:
    return not entry.sections or getattr(section(curate_cfg, entry.sections[0]), "enabled", True)


def skipped(curate_cfg) -> dict[str, str]:
    """Enabled stages that cannot do their job with this config -> why (recorded in summary and report).

    Nothing is downloaded at run time, so a model stage without configured weights has nothing to run.
    """
    f = curate_cfg.filters
    out = {}
    if f.aesthetic.enabled and not f.aesthetic.pretrained:
        out["aesthetic"] = ("no CLIP weights configured (curate.filters.aesthetic.pretrained is empty): "
                            "no aesthetic score and no clip embeddings")
    elif f.aesthetic.enabled and not f.aesthetic.head:
        out["aesthetic"] = ("no aesthetic head configured (curate.filters.aesthetic.head is empty): "
                            "clip embeddings only, min_score not applied")
    if f.caption_match.enabled and not f.caption_match.pretrained:
        out["caption_match"] = ("no CLIP weights configured (curate.filters.caption_match.pretrained is empty): "
                                "caption similarity not scored")
    if f.dedup.enabled and (not f.aesthetic.enabled or not f.aesthetic.pretrained):
        out["dedup"] = "no clip embeddings (the aesthetic stage has no CLIP weights): embedding dedup not run"
    return out


def runnable(curate_cfg, phase: str, within: str = "") -> list[StageEntry]:
    """Enabled, runnable Ray stages of ``phase`` in list order (only those configured under ``within``,
    e.g. ``"filters."``, when given).

    A skipped model stage stays out of Ray (nothing to load), except the aesthetic stage: it is cheap
    without weights and records its ``aesthetic_skip`` reason on every row.
    """
    skip = skipped(curate_cfg)
    return [e for e in STAGES if e.phase == phase and e.cls is not None
            and (not within or (e.sections and e.sections[0].startswith(within)))
            and is_enabled(e, curate_cfg) and (e.name not in skip or e.name in RUNS_WHEN_SKIPPED)]


def stage_args(entry: StageEntry, curate_cfg) -> tuple:
    return tuple(section(curate_cfg, p) for p in entry.sections)


def check_columns(curate_cfg) -> None:
    """Every runnable stage's declared inputs are made by an earlier stage; else StageListError naming both.

    Video rows become clip rows at ``plan``: from then on only the plan's columns and later outputs count.
    """
    skip = skipped(curate_cfg)
    have = set(VIDEO_SEED_COLUMNS)
    problems = []
    for e in STAGES:
        if not is_enabled(e, curate_cfg):
            continue
        if e.name in skip and e.name not in RUNS_WHEN_SKIPPED:
            continue  # a recorded skip: it neither needs nor makes anything
        missing = [c for c in e.needs() if c not in have]
        if missing:
            problems.append(f"stage {e.name!r} needs column(s) {missing} that no earlier enabled stage makes")
        if e.name == "plan":
            have = set()
        have.update(e.makes())
    if problems:
        raise StageListError("; ".join(problems))
