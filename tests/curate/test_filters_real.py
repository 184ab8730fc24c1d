"""text_overlay and nsfw at their default thresholds on the labelled real clips of
bench/data/filter_labels.yaml (../shared/media; skipped without it): no text-free clip is dropped for
text, no clip is dropped as unsafe (nothing in ../shared is), and the real text-heavy clips (title
cards, the burnt-in counter) are caught. The generated clips of the same set (subtitles over noise,
stripes, a checkerboard and blobs; title cards) need no media: all caught, their text-free twins not."""
import importlib.util
import sys
from pathlib import Path

import pytest

from reelforge.curate.stage import rows_to_batch
from reelforge.curate.stages.nsfw import NsfwConfig, NsfwStage
from reelforge.curate.stages.text_overlay import TextOverlayConfig, TextOverlayStage

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("filter_set", ROOT / "bench" / "filter_set.py")
filter_set = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("filter_set", filter_set)  # its dataclasses look their module up by name
_spec.loader.exec_module(filter_set)

TEXT_HEAVY = ("s30_title", "s10_title", "counter")


@pytest.fixture(scope="module")
def scored(shared_dir):
    entries = [e for e in filter_set.load_entries() if e.real]
    rows = filter_set.rows(entries, shared_dir)
    batch = rows_to_batch(rows)
    for stage in (TextOverlayStage(), NsfwStage()):
        batch = stage(batch)
    out = [{k: batch[k][i] for k in batch} for i in range(len(rows))]
    return [(e, r) for e, r in zip(entries, out)]


def test_no_text_free_real_clip_is_dropped_for_text(scored):
    cfg = TextOverlayConfig()
    wrong = [(e.id, r["text_area"]) for e, r in scored if not e.text and cfg.check(r)]
    assert len([e for e, _ in scored if not e.text]) >= 15 and not wrong, wrong


def test_real_text_heavy_clips_are_caught(scored):
    cfg = TextOverlayConfig()
    caught = {e.id for e, r in scored if cfg.check(r)}
    assert set(TEXT_HEAVY) <= caught, {e.id: r["text_area"] for e, r in scored if e.id in TEXT_HEAVY}


def test_no_shared_clip_is_dropped_as_unsafe(scored):
    cfg = NsfwConfig()
    assert all(r["status"] == "ok" for _, r in scored)
    wrong = [(e.id, r["nsfw"], r["nsfw_exposed"]) for e, r in scored if cfg.check(r)]
    assert not wrong, wrong


def test_generated_overlays_of_the_labelled_set():
    entries = [e for e in filter_set.load_entries() if not e.real]
    rows = filter_set.rows(entries, None, k=4)
    cfg = TextOverlayConfig()
    batch = TextOverlayStage(cfg)(rows_to_batch(rows))
    dropped = {e.id: cfg.check({k: batch[k][i] for k in batch}) is not None for i, e in enumerate(entries)}
    assert "gen_sub_checker" in dropped and sum(e.text for e in entries) >= 7
    assert dropped == {e.id: e.text for e in entries}, {e.id: batch["text_area"][i] for i, e in enumerate(entries)}
