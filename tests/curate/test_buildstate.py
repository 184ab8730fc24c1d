"""Which settings key the work on disk (a change needs --rebuild) and which only change decisions."""
from __future__ import annotations

from reelforge.config import load_config
from reelforge.curate.buildstate import changed_settings, work_settings
from reelforge.curate.pipeline import BuildConfig


def _work(*overrides):
    return work_settings(load_config(BuildConfig, None, list(overrides)).curate)


def test_thresholds_and_speed_settings_are_not_work_keys():
    base = _work()
    for change in ("curate.filters.motion.min_motion=0.5", "curate.filters.basic.max_duration_s=7",
                   "curate.filters.dedup.threshold=0.9", "curate.filters.near_dup.max_hamming=10",
                   "curate.filters.motion.enabled=false", "curate.transcode.threads=7",
                   "curate.filters.nsfw.batch_size=3", "curate.scenes.decode_workers=3"):
        assert changed_settings(base, _work(change)) == {}, change


def test_settings_that_change_the_clips_are_work_keys():
    base = _work()
    assert changed_settings(base, _work("curate.split.max_seconds=4")) == {
        "videos": ["curate.split.max_seconds: 10.0 -> 4.0"]}
    # transcode's max_side starts like a threshold but sizes the clips
    assert list(changed_settings(base, _work("curate.transcode.max_side=320"))) == ["clips"]
    assert list(changed_settings(base, _work("curate.scenes.cut_threshold=30"))) == ["videos"]
    assert list(changed_settings(base, _work("curate.filters.aesthetic.pretrained=/w/clip.pt"))) == ["clips"]


def test_switching_a_scorer_on_is_work_switching_it_off_is_not():
    on, off = _work(), _work("curate.filters.motion.enabled=false")
    assert changed_settings(on, off) == {}
    assert changed_settings(off, on) == {"clips": ["curate.filters.motion.enabled: False -> True"]}
    sig_off = _work("curate.filters.near_dup.enabled=false")
    assert list(changed_settings(sig_off, on)) == ["clips"]  # its signatures were never computed


def test_keys_only_one_side_knows_are_not_compared():
    recorded = {"clips": {"curate.transcode.crf": 20, "curate.transcode.removed_key": 1}}
    assert changed_settings(recorded, {"clips": {"curate.transcode.crf": 20, "curate.transcode.new_key": 2}}) == {}
