import pytest

from reelforge.curate.stages.probe import Probe, ProbeConfig


def _run(paths):
    out = Probe(ProbeConfig())({"path": [str(p) for p in paths], "status": ["ok"] * len(paths),
                                "reason": [""] * len(paths)})
    return [{k: out[k][i] for k in out} for i in range(len(paths))]


def test_bad_files_fail_with_reasons(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video\n" * 200)
    rows = _run([empty, text])
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert "0 bytes" in rows[0]["reason"]
    assert rows[1]["reason"].startswith("probe: ") and rows[1]["sha256"]


def test_shared_media_probe_fields(shared_media):
    rows = {r["path"].rsplit("/", 1)[1]: r for r in _run(sorted(shared_media.glob("*.m*")))}
    assert rows["decord_video_90.mov"]["rotation"] == 90
    assert rows["decord_video_270.mov"]["rotation"] == 270
    assert (rows["decord_video_90.mov"]["display_width"], rows["decord_video_90.mov"]["display_height"]) == (320, 568)
    assert rows["psd_delayed_start.mp4"]["start_time"] == pytest.approx(1.075)
    assert rows["psd_issue-195-aspect-ratio.mp4"]["display_width"] == 1024
    assert rows["psd_issue-134-rotate.mp4"]["has_audio"] and rows["psd_issue-134-rotate.mp4"]["audio_codec"] == "aac"
    assert rows["decord_flipping_a_pancake.mkv"]["frame_count"] > 300  # estimated: the mkv has no count
    assert rows["sintel_trailer_10s.mp4"]["fps"] == pytest.approx(24.0)
    assert all(len(r["sha256"]) == 64 for r in rows.values())
