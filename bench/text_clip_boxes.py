"""Every text box PP-OCRv4 finds in a build's clips, frame by frame, and the text_overlay decision with
and without the persistence rule: for checking a build's text decisions against its frames.

The clips are those of BUILD's clips.parquet that reached the transcode (num_frames set), whatever
filter removed them later; their K = 8 frames are taken from VIDEO as the transcode takes them (evenly
spaced over the span, short side <= 256) and scored inside the borders stage's crop box. BUILD may be
a build of the same video at another size: spans and crop boxes are in frames and clip pixels, which
scale. --png writes each clip's K frames as one PNG strip (4 a row) to look at.

    .venv/bin/reelforge build -i IN_DIR --output OUT
    .venv/bin/python bench/text_clip_boxes.py IN_DIR/video.mp4 OUT [--png DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd


def clip_rows(video: Path, build: Path, k: int = 8, short_side: int = 256) -> list[dict]:
    clips = pd.read_parquet(build / "clips.parquet")
    with av.open(str(video)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    rows = []
    for _, r in clips.iterrows():
        if pd.isna(r.get("num_frames")):
            continue  # never transcoded: no frames were sampled
        span = frames[int(r.start_frame):int(r.end_frame)]
        idx = np.linspace(0, len(span) - 1, min(k, len(span))).round().astype(int)
        h, w = span[0].shape[:2]
        s = min(1.0, short_side / min(h, w))
        picked = np.stack([cv2.resize(span[i], (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
                           if s < 1 else span[i] for i in idx])
        row = {key: r[key] for key in ("clip_id", "crop_x0", "crop_y0", "crop_x1", "crop_y1", "width", "height")}
        row.update(status="ok", reason=None, frames=picked, span=(int(r.start_frame), int(r.end_frame)),
                   src_frames=[int(r.start_frame) + int(i) for i in idx],
                   build_reason=r.reason if isinstance(r.reason, str) else "kept")
        rows.append(row)
    return rows


def main() -> None:
    from reelforge.curate.stage import rows_to_batch
    from reelforge.curate.stages.common import crop_in_frames
    from reelforge.curate.stages.text_overlay import TextOverlayConfig, TextOverlayStage
    from reelforge.curate.text_detector import boxes_from_map, centre_window
    from reelforge.curate.text_recognizer import crop_box

    ap = argparse.ArgumentParser()
    ap.add_argument("video")
    ap.add_argument("build")
    ap.add_argument("--png", default="")
    args = ap.parse_args()
    rows = clip_rows(Path(args.video), Path(args.build))
    cfg, once = TextOverlayConfig(), TextOverlayConfig(persist_frames=1)
    stage = TextOverlayStage(cfg)
    scored = {}
    for name, c in (("default", cfg), ("persist_frames 1", once)):
        stage.cfg = c
        out = stage(rows_to_batch([{k: v for k, v in r.items() if k not in ("span", "src_frames")} for r in rows]))
        scored[name] = [{k: out[k][i] for k in out} for i in range(len(rows))]
    det = stage.detector
    for i, r in enumerate(rows):
        new, old = scored["default"][i], scored["persist_frames 1"][i]
        print(f"{r['span'][0]}-{r['span'][1]} (build: {r['build_reason']}): text_area {new['text_area']:.4f} "
              f"-> {'drop' if cfg.check(new) else 'keep'}; persist_frames 1: {old['text_area']:.4f} "
              f"-> {'drop' if once.check(old) else 'keep'}")
        x0, y0, x1, y1 = crop_in_frames(r, r["frames"])
        frames = np.ascontiguousarray(r["frames"][:, y0:y1, x0:x1])
        probs = det.probability(frames)
        sy, sx = frames.shape[1] / probs.shape[1], frames.shape[2] / probs.shape[2]
        for j, p in enumerate(probs):
            boxes, scores = boxes_from_map(p, **det.post)
            boxes = boxes * np.array([sx, sy], np.float32)
            reads = det.reader.read([centre_window(crop_box(frames[j], b), det.max_read_ratio) for b in boxes]) \
                if len(boxes) and det.reader is not None else [("", float("nan"))] * len(boxes)
            for b, s, (text, conf) in zip(boxes, scores, reads):
                print(f"    frame {j} (source {r['src_frames'][j]}): box {b.min(0).round().tolist()}-"
                      f"{b.max(0).round().tolist()} score {s:.2f}, read {text!r} at {conf:.2f}")
        if args.png:
            Path(args.png).mkdir(parents=True, exist_ok=True)
            strip = [np.concatenate(list(frames[a:a + 4]), 1) for a in range(0, len(frames), 4)]
            width = max(s.shape[1] for s in strip)
            strip = [np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0))) for s in strip]
            cv2.imwrite(str(Path(args.png) / f"{r['span'][0]:05d}-{r['span'][1]:05d}.png"),
                        np.concatenate(strip)[..., ::-1])


if __name__ == "__main__":
    main()
