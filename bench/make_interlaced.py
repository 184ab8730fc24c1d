"""Interlaced sources made from real footage, and how combed their clips are before and after deinterlacing.

Consecutive frames of a (progressive) video become the two fields of one interlaced frame, bottom field
first (FFmpeg's libx264 and MPEG-2 encoders take the field order from each frame's flag, which PyAV
cannot set): 24 fps sintel becomes 12 frames/s of fields 1/24 s apart, moving as a 25i camera's do.
Written as H.264 (x264 ``interlaced=1``) and MPEG-2 (``+ilme+ildct``) in MPEG-TS at 720x576 and
1920x1080. For each, the first 2 s are transcoded with and without the deinterlacer and the clip's
combing (mean |line - mean of its neighbours|, luma levels) is printed, against the same measure on
the progressive source frames (what a clip without combing has):

    .venv/bin/python bench/make_interlaced.py ../shared/media/sintel_trailer_10s.mp4 OUT_DIR
    .venv/bin/python bench/bench_formats_transcode.py --other OLD_transcode.py OUT_DIR/*.ts   # CPU
"""
from __future__ import annotations

import argparse
import io
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "curate"))
import formats_inputs as fi  # noqa: E402

from reelforge.curate.stages import transcode as tr  # noqa: E402
from reelforge.curate.stages.probe import probe_file  # noqa: E402


def comb(gray: np.ndarray) -> float:
    y = gray.astype(np.float64)
    return float(np.abs(y[1:-1] - 0.5 * (y[:-2] + y[2:])).mean())


def woven(frames: list[np.ndarray], w: int, h: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(interlaced frames, the progressive frames they were made of, resized): frame i's bottom field
    (odd lines) from frame 2i, its top field from 2i + 1."""
    prog = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]
    out = []
    for a, b in zip(prog[0::2], prog[1::2]):
        img = b.copy()
        img[1::2] = a[1::2]
        out.append(img)
    return out, prog


def clip_comb(path: Path, old: bool) -> tuple[float, int]:
    p = probe_file(str(path))
    with av.open(str(path)) as c:
        ts = [f.time for f in c.decode(video=0)]
    n = min(len(ts), int(2 * p["fps"]))
    row = {"video_path": str(path), "start_frame": 0, "end_frame": n, "start_pts": ts[0], "end_pts": ts[n - 1],
           "rotation": 0, "sar": p["sar"], "src_fps": p["fps"], "status": "ok", "reason": ""}
    add = tr._ClipEncoder.add
    if old:  # the path before: every frame to the encoder as decoded
        tr._ClipEncoder.add = tr._ClipEncoder._add
    try:
        out = tr.Transcode(tr.TranscodeConfig(max_side=4096))({k: [v] for k, v in row.items()})
    finally:
        tr._ClipEncoder.add = add
    with av.open(io.BytesIO(out["mp4"][0])) as c:
        frames = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    return float(np.mean([comb(f) for f in frames])), len(frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("video")
    ap.add_argument("out_dir")
    args = ap.parse_args()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with av.open(args.video) as c:
        src = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    rate = Fraction(25)
    for w, h in ((720, 576), (1920, 1080)):
        inter, prog = woven(src, w, h)
        ref = np.mean([comb(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)) for f in prog[:100]])
        for name, codec, opts in (
                ("h264", "libx264", {"preset": "veryfast", "crf": "18", "g": "25", "x264-params": "interlaced=1:bff=1"}),
                ("mpeg2", "mpeg2video", {"qscale": "3", "g": "12", "bf": "2", "flags": "+ilme+ildct"})):
            path = fi.encode(out_dir / f"{name}_{h}i.ts", inter, rate, codec, "yuv420p", fmt="mpegts", options=opts,
                             tags=fi.BT709 if h > 576 else fi.BT601, rng=fi.LIMITED)
            before, n0 = clip_comb(path, old=True)
            after, n1 = clip_comb(path, old=False)
            print(f"{path.name:18s} {n0}/{n1} frames  combing before {before:.2f}  after {after:.2f}  "
                  f"(progressive source {ref:.2f})")


if __name__ == "__main__":
    main()
