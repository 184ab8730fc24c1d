"""The dataset report: funnel numbers, one chart per score column, thresholds from config.yaml, thumbnails
decoded from a real shard, and a report (not a crash) for damaged or empty datasets."""
from __future__ import annotations

import argparse
import base64
import json
import sys
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from reelforge.config import to_dict
from reelforge.curate.filters import FiltersConfig
from reelforge.curate.report import add_parser, write_report
from reelforge.curate.report.numbers import NOT_BOUNDS, THRESHOLDS, Bound, histogram, section_bounds
from reelforge.curate.stages.motion import MotionConfig
from reelforge.shards.writer import ShardWriter, ShardWriterConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shards"))
from shard_fixtures import encode_mp4, make_frames  # noqa: E402


class Page(HTMLParser):
    """Collects what the tests look at: svg chart columns, img sources, visible text, external refs."""

    def __init__(self, text: str):
        super().__init__()
        self.svg_columns, self.imgs, self.text, self.refs, self.scripts = [], [], [], [], 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and "data-column" in a:
            self.svg_columns.append(a["data-column"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "script":
            self.scripts += 1
        for k in ("href", "src"):
            if a.get(k) and not a[k].startswith("data:"):
                self.refs.append(a[k])

    def handle_data(self, data):
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return " ".join(self.text)


def _clip(cid, status, reason, shard, **scores):
    return {"clip_id": cid, "video_path": "/src/a.mp4", "start_s": 0.0, "end_s": 1.0, "duration_s": 1.0,
            "width": 48, "height": 32, "fps": 8.0, "num_frames": 8, "shard": shard, "status": status,
            "reason": reason, **scores}


def make_dataset(root: Path, summary_overrides: dict | None = None, extra_rows: list[dict] | None = None) -> Path:
    """5 planned clips: 1 kept, motion and exposure removals with media, a split-dropped span (no media),
    one failed transcode; plus a text_overlay removal whose mp4 is garbage (its tile shows the error)."""
    root.mkdir(parents=True)
    with ShardWriter(root / "shards", ShardWriterConfig(target_bytes=10 ** 9)) as w:
        shard = w.current_name()
        for i, cid in enumerate(("keep0", "still1", "dark2")):
            w.write(cid, {"mp4": encode_mp4(make_frames(i, 8, 48, 32), 8), "json": b"{}"})
        w.write("junk3", {"mp4": b"not an mp4 at all", "json": b"{}"})
    rows = [
        _clip("keep0", "ok", None, shard, motion_mean=0.01, exposure_mean=0.5, aspect_ratio=1.5, text_area=0.0),
        _clip("still1", "filtered", "motion: motion_mean=0.0001 < min 0.0005", shard,
              motion_mean=0.0001, exposure_mean=0.5, aspect_ratio=1.5),
        _clip("dark2", "filtered", "exposure: exposure_mean=0.02 < min 0.08", shard,
              motion_mean=0.002, exposure_mean=0.02, aspect_ratio=1.5),
        _clip("junk3", "filtered", "text_overlay: text_area=0.3 > max 0.02", shard,
              motion_mean=0.003, exposure_mean=0.4, aspect_ratio=1.5, text_area=0.3),
        _clip("short4", "filtered", "split: span shorter than min_seconds", None),
        _clip("fail5", "failed", "transcode: ValueError: bad frame", None),
    ] + (extra_rows or [])
    pq.write_table(pa.Table.from_pylist(rows), root / "clips.parquet")  # schema: the first row's keys
    videos = [{"path": "/src/a.mp4", "status": "ok", "reason": "", "duration_s": 6.0, "width": 48, "height": 32,
               "fps": 8.0, "num_clips": len(rows), "num_clips_ok": 1},
              {"path": "/src/broken.mp4", "status": "failed", "reason": "probe: cannot open: invalid data",
               "duration_s": None, "width": None, "height": None, "fps": None, "num_clips": 0, "num_clips_ok": 0}]
    pq.write_table(pa.Table.from_pylist(videos), root / "videos.parquet")
    summary = {"inputs": 2, "videos_ok": 1, "videos_failed": 1, "clips": 6, "clips_ok": 1, "shards": 1,
               "funnel": {"basic": 0, "borders": 0, "exposure": 1, "motion": 1, "aesthetic": 0, "text_overlay": 1,
                          "nsfw": 0, "caption_match": 0, "dedup": 0, "split": 1},
               "shard_bytes": 1000, "wall_s": 1.0, "source_seconds": 6.0, **(summary_overrides or {})}
    (root / "summary.json").write_text(json.dumps(summary))
    (root / "config.yaml").write_text(yaml.safe_dump({"curate": {"filters": to_dict(FiltersConfig())}}))
    return root


def test_report_funnel_charts_and_thumbnails(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    out = write_report(ds)
    assert out == ds / "report.html"
    page = Page(out.read_text())
    record = json.loads((ds / "report.json").read_text())

    f = record["funnel"]
    assert (f["planned"], f["kept"], f["failed"]) == (6, 1, 1)
    assert f["removed"]["motion"] == 1 and f["removed"]["exposure"] == 1 and f["removed"]["split"] == 1
    assert f["adds_up"] and f["warnings"] == []
    # the splitter drops spans before any filter sees them, so it comes first
    assert list(f["removed"])[0] == "split"
    assert "planned 6 = kept 1 + removed 4 + failed 1" in page.all_text
    assert "does not add up" not in page.all_text

    # one chart per numeric score column that has values; thresholds from config.yaml on them
    assert sorted(page.svg_columns) == sorted(["motion_mean", "exposure_mean", "aspect_ratio", "text_area",
                                               "duration_s", "fps"])
    html = out.read_text()
    motion_svg = html.split('data-column="motion_mean"')[1].split("</svg>")[0]
    assert "min 0.0005" in motion_svg and "motion.min_motion" in motion_svg
    assert {"column": "exposure_mean", "section": "exposure", "key": "min_mean", "kind": "min",
            "value": 0.08} in record["thresholds"]

    # three decodable clips -> three JPEG data: URIs of first|middle frame; the garbage one shows its error
    assert len(page.imgs) == 3 and all(s.startswith("data:image/jpeg;base64,") for s in page.imgs)
    jpg = cv2.imdecode(np.frombuffer(base64.b64decode(page.imgs[0].split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert jpg.shape[:2] == (84, 2 * 112 + 3)  # first | middle frame, each fitted into 112x84
    assert "decode failed" in page.all_text
    assert "kept" in record["contact_sheet"] and record["contact_sheet"]["filtered · motion"] == ["still1"]
    # clips without media (split-dropped, failed) are listed with their reasons instead
    assert "split: span shorter than min_seconds" in page.all_text
    assert "transcode: ValueError: bad frame" in page.all_text

    # inputs: the failed file listed under its reason; self-contained page
    assert "probe: cannot open: invalid data" in page.all_text and "broken.mp4" in page.all_text
    assert page.refs == [] and page.scripts == 0


def test_funnel_that_does_not_add_up_is_flagged(tmp_path):
    # a row whose status is none of ok|filtered|failed, and a summary.json from before a refilter
    ds = make_dataset(tmp_path / "ds", summary_overrides={"clips_ok": 4},
                      extra_rows=[_clip("odd6", "pending", None, None)])
    out = write_report(ds)
    text = Page(out.read_text()).all_text
    record = json.loads((ds / "report.json").read_text())
    assert not record["funnel"]["adds_up"]
    assert "the funnel does not add up" in text
    assert "planned 7 != kept 1 + removed 4 + failed 1" in text
    assert "summary.json says kept = 4, clips.parquet has 1" in text


def test_missing_columns_and_empty_datasets_still_report(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    page = Page(write_report(empty).read_text())
    assert "no clips.parquet" in page.all_text and "no config.yaml" in page.all_text
    assert json.loads((empty / "report.json").read_text())["funnel"]["planned"] == 0

    # only the columns the funnel needs; a config with a section this code does not know
    bare = tmp_path / "bare"
    bare.mkdir()
    pq.write_table(pa.Table.from_pylist([{"clip_id": "a", "status": "ok"}, {"clip_id": "b", "status": "filtered",
                                                                           "reason": "motion: x"}]),
                   bare / "clips.parquet")
    (bare / "config.yaml").write_text(yaml.safe_dump({"curate": {"filters": {"motion": {"min_motion": "lots"}}}}))
    (bare / "summary.json").write_text("[1, 2]")
    page = Page(write_report(bare, tmp_path / "elsewhere" / "r.html").read_text())
    assert page.svg_columns == [] and page.imgs == []
    assert "curate.filters.motion not understood" in page.all_text
    assert "summary.json is not a mapping" in page.all_text
    assert (tmp_path / "elsewhere" / "r.json").is_file()

    # zero rows with a schema
    zero = tmp_path / "zero"
    zero.mkdir()
    pq.write_table(pa.table({"clip_id": pa.array([], pa.string()), "status": pa.array([], pa.string()),
                             "motion_mean": pa.array([], pa.float64())}), zero / "clips.parquet")
    assert "planned 0 = kept 0" in Page(write_report(zero).read_text()).all_text

    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nope")


# a non-"off" value for keys whose default switches them off, so the probe below has a bound to find
ON_VALUES = {"max_motion": 0.05, "max_jitter": 0.01, "max_text_boxes": 3, "max_text_box": 0.5, "max_nsfw_alone": 0.9}
# what else a row needs for a check to reach the key (nsfw: NudeNet scored it, and does not agree)
PROBE_CONTEXT = {("nsfw", "max_nsfw_alone"): {"nsfw_exposed": 0.0}, ("dedup", "threshold"): {"dedup_of": "x"}}


@pytest.mark.parametrize("section,key,column", [(s, k, c) for s, entries in THRESHOLDS.items() for k, c, _ in entries],
                         ids=lambda v: str(v))
def test_each_declared_threshold_is_what_the_check_enforces(section, key, column):
    cfg = getattr(FiltersConfig(), section)
    value = ON_VALUES.get(key, getattr(cfg, key))
    cfg = type(cfg)(**{**to_dict(cfg), key: value})
    kind = "max" if key == "threshold" else key.split("_", 1)[0]
    beyond, within = (value * 0.5, value * 1.5) if kind == "min" else (value * 1.5 + 1e-3, value * 0.5)
    ctx = PROBE_CONTEXT.get((section, key), {})
    why = cfg.check({**ctx, column: beyond})
    assert why and f"{float(value):.4g}" in why.replace(f"{float(value):g}", f"{float(value):.4g}"), why
    assert cfg.check({**ctx, column: within}) is None
    assert [b.key for b in section_bounds(section, cfg) if b.column == column and b.key == key] == [key]


def test_every_filter_threshold_key_is_declared():
    import dataclasses

    for f in dataclasses.fields(FiltersConfig):
        keys = {x.name for x in dataclasses.fields(f.type if isinstance(f.type, type) else
                                                   type(getattr(FiltersConfig(), f.name)))
                if x.name.startswith(("min_", "max_")) or x.name == "threshold"}
        declared = {k for k, _, _ in THRESHOLDS.get(f.name, ())} | NOT_BOUNDS.get(f.name, set())
        assert keys <= declared, (f"curate.filters.{f.name}: {sorted(keys - declared)} bound no column the report "
                                  f"knows: add them to THRESHOLDS (or NOT_BOUNDS) in curate/report/numbers.py")


def test_bounds_come_from_each_sections_check():
    bounds = section_bounds("motion", MotionConfig(min_motion=0.002, max_motion=0.0, max_jitter=0.01))
    got = {(b.column, b.key, b.kind, b.value) for b in bounds}
    # max_motion=0 means "no upper bound": the check enforces none, so none is drawn
    assert got == {("motion_mean", "min_motion", "min", 0.002), ("motion_jitter", "max_jitter", "max", 0.01)}
    cfg = FiltersConfig()
    assert [(b.column, b.key) for b in section_bounds("dedup", cfg.dedup)] == [("dedup_cosine", "threshold")]


def test_histogram_goes_log_for_wide_ranges_and_shows_near_thresholds():
    rows = [{"status": "ok", "m": v} for v in (1e-6, 1e-4, 1e-2, 0.0)] + [{"status": "failed", "m": 5.0}]
    h = histogram(rows, "m", [Bound("m", "motion", "min_motion", "min", 5e-4)])
    assert h["log"] and h["n"] == 4 and h["zeros_in_first_bin"] == 1 and sum(h["kept"]) == 4
    lin = histogram([{"status": "ok", "m": v} for v in (0.4, 0.6)], "m",
                    [Bound("m", "exposure", "max_mean", "max", 0.7), Bound("m", "basic", "max_fps", "max", 100.0)])
    assert not lin["log"] and lin["edges"][-1] == pytest.approx(0.7)  # 0.7 pulled in, 100 left off the axis


def test_cli_subcommand(tmp_path, capsys):
    ds = make_dataset(tmp_path / "ds")
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", str(ds), "--out", str(tmp_path / "r.html"), "--per-group", "1"])
    assert args.func(args) == 0
    assert "report written to" in capsys.readouterr().out
    assert len(Page((tmp_path / "r.html").read_text()).imgs) == 3  # one per group: kept, motion, exposure
