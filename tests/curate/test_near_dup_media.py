"""Near-duplicates on real footage (../shared/media; skipped without it): a build of the Sintel trailer and
two re-encodes of it (smaller, lower bitrate, cut at 1.125 s and 6.6 s: 1.125 is the worst case for
half-second windows on a quarter-second grid) marks every copied clip as a near-duplicate of the original
clip it repeats; --refilter re-decides; and no two different shots of the shared videos are matched."""
from __future__ import annotations

import json
from itertools import groupby

import pyarrow.parquet as pq
import pytest
from test_near_dup import reencode

from reelforge.config import load_config
from reelforge.curate.near_dup import NearDupConfig, Signatures, find_near_duplicates
from reelforge.curate.pipeline import BuildConfig, run_build, run_refilter
from reelforge.curate.stages.signature import decoded_frames, signature_of_frames

TRIM_S = 1.125
OVERRIDES = ["ray.dashboard=false", "ray.progress_bars=false", "ray.num_cpus=2", "report=false",
             "curate.transcode.max_side=320",  # smaller clips encode faster; a 64-px thumbnail does not care
             # only near-duplicates decide here: a copy's clip must reach the near-dup search, not be
             # removed first for the letterbox bars or dark frames the original shares
             *(f"curate.filters.{f}.enabled=false" for f in ("borders", "exposure", "motion", "text_overlay", "nsfw"))]


@pytest.fixture(scope="module")
def built(shared_media, ray_local, tmp_path_factory):
    raw = tmp_path_factory.mktemp("near_dup_raw")
    orig = raw / "sintel.mp4"
    orig.write_bytes((shared_media / "sintel_trailer_10s.mp4").read_bytes())
    reencode(orig, raw / "copy_320p.mp4", 320, 32, start_s=6.6)  # 854x480 -> 568x320, crf 32, the last 3.4 s
    reencode(orig, raw / "copy_trim.mp4", 272, 30, start_s=TRIM_S, end_s=9.5)
    out = tmp_path_factory.mktemp("near_dup_ds")
    cfg = load_config(BuildConfig, None, OVERRIDES)
    run_build([str(raw)], out, cfg)
    return out, cfg


def _clips(out):
    return {r["clip_id"]: r for r in pq.read_table(out / "clips.parquet").to_pylist()}


def test_copies_are_near_duplicates_of_the_original(built):
    out, _ = built
    clips = _clips(out)
    by_video = {}
    for r in clips.values():
        by_video.setdefault(r["video_path"].rsplit("/", 1)[1], []).append(r)
    assert set(by_video) == {"sintel.mp4", "copy_320p.mp4", "copy_trim.mp4"}
    originals = [r for r in by_video["sintel.mp4"] if r["mp4_bytes"]]
    assert originals and all(r["status"] == "ok" for r in originals)  # the 854x480 source is kept
    shift = {"copy_320p.mp4": 6.6, "copy_trim.mp4": TRIM_S}
    for name, offset in shift.items():
        copies = [r for r in by_video[name] if r["mp4_bytes"]]  # clips the policy kept (>= 1 s)
        assert copies
        for r in copies:
            assert r["status"] == "filtered", r
            assert r["reason"].startswith(f"near_dup: near-duplicate of {r['near_dup_of']} (hamming "), r["reason"]
            kept = clips[r["near_dup_of"]]
            assert kept["video_path"].endswith("/sintel.mp4")
            # the named clip shows the same footage: its span overlaps the copy's span on the source clock
            start, end = r["start_s"] + offset, r["end_s"] + offset
            assert min(end, kept["end_s"]) - max(start, kept["start_s"]) > 0.5 * (end - start), (r, kept)
    sigs = pq.read_table(out / "signatures.parquet")
    assert set(sigs.column("clip_id").to_pylist()) == {r["clip_id"] for r in clips.values() if r["mp4_bytes"]}


def test_refilter_redecides_near_duplicates(built):
    out, cfg = built
    before = _clips(out)
    off = load_config(BuildConfig, None, OVERRIDES + ["curate.filters.near_dup.enabled=false"])
    run_refilter(out, off)
    assert all(r["status"] == "ok" for r in _clips(out).values() if r["mp4_bytes"])
    run_refilter(out, cfg)
    assert {k: (r["status"], r["reason"]) for k, r in _clips(out).items()} == \
           {k: (r["status"], r["reason"]) for k, r in before.items()}


# the shared files that show the same footage: the 10-s trailer is the 30-s trailer's 3.0-13.0 s
# (re-encoded: different bytes), and decord's four test videos are one clip under four rotation tags
SAME_FOOTAGE = ({"sintel_trailer_10s.mp4", "sintel_trailer_30s.mp4"},
                {"decord_video_0.mov", "decord_video_90.mov", "decord_video_180.mov", "decord_video_270.mov"})


def test_no_false_positives_across_shared_media(shared_media, ground_truth):
    """Every shared video cut into its shots (reference cuts where known, else whole), signed from its
    own decoded frames: only shots of the same footage may match."""
    names, sigs = [], []
    for path in sorted(shared_media.iterdir()):
        if path.suffix not in (".mp4", ".mov", ".mkv") or path.name == "decord_corrupted.mp4":
            continue
        cuts = (ground_truth.get(path.name) or {}).get("union_seconds") or []
        frames = decoded_frames(path, threads=2)
        for shot, group in groupby(frames, key=lambda tf: sum(tf[0] >= c - 1e-3 for c in cuts)):
            names.append(f"{path.name}#{shot}")
            sigs.append(signature_of_frames(group))
    assert len(names) >= 30
    dups, _ = find_near_duplicates(Signatures.from_bytes(names, sigs), None, NearDupConfig())
    family = {n: i for i, fam in enumerate(SAME_FOOTAGE) for n in fam}
    wrong = {d: k for d, (k, _) in dups.items()
             if family.get(d.split("#")[0], d.split("#")[0]) != family.get(k.split("#")[0], k.split("#")[0])}
    assert not wrong, wrong
    # and the footage the 10-s and 30-s trailers share is found (shots cut at the union cuts differ, so
    # not every shot pairs up; most of the 10-s trailer's do)
    ten = [n for n in names if n.startswith("sintel_trailer_10s")]
    assert sum(n in dups or any(k == n for k, _ in dups.values()) for n in ten) >= len(ten) - 1, (ten, dups)
    print(json.dumps({d: k for d, (k, _) in dups.items()}, indent=1))
