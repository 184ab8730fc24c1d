"""Judging a build's clips against the truth of ``formats_inputs``: playable H.264, the table's numbers,
upright and at the display aspect, and the colours of the source.

Colours are judged with our own YUV -> RGB (numpy, the matrix and range the clip is tagged with; an
untagged one as mpv and VLC guess: BT.709 from 1280x577 up, else BT.601), not with swscale, which the transcoder
itself uses: a mistake there must not be repeated by the judge.
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import av
import cv2
import numpy as np

# (Kr, Kb) of each AVColorSpace the judge knows
_KRKB = {1: (0.2126, 0.0722), 5: (0.299, 0.114), 6: (0.299, 0.114), 9: (0.2627, 0.0593)}


def to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 3) float RGB in 0..255 of a decoded frame, by its own tags (numpy, not swscale)."""
    if frame.format.name.startswith(("gray", "rgb", "bgr", "gbr")):
        return frame.to_ndarray(format="rgb24").astype(np.float64)
    full = frame.color_range == 2 or frame.format.name.startswith("yuvj")
    # chroma to full size with the same range and matrix (a yuv -> yuv reformat keeps both)
    yuv = frame.reformat(format="yuvj444p" if full else "yuv444p", src_colorspace=None, dst_colorspace=None)
    planes = yuv.to_ndarray().astype(np.float64)  # (3, H, W)
    y, u, v = planes[0], planes[1] - 128.0, planes[2] - 128.0
    if full:
        y, u, v = y / 255.0, u / 255.0, v / 255.0
    else:
        y, u, v = (y - 16.0) / 219.0, u / 224.0, v / 224.0
    spc = int(frame.colorspace)
    if spc not in _KRKB or spc == 2:  # untagged: as players guess, BT.709 for HD sizes
        spc = 1 if frame.width >= 1280 or frame.height > 576 else 6
    kr, kb = _KRKB[spc]
    kg = 1.0 - kr - kb
    r = y + 2 * (1 - kr) * v
    b = y + 2 * (1 - kb) * u
    g = (y - kr * r - kb * b) / kg
    return np.clip(np.stack([r, g, b], -1) * 255.0, 0, 255)


def clip_frames(mp4: bytes) -> tuple[list[av.VideoFrame], dict]:
    with av.open(io.BytesIO(mp4)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        info = {"codec": s.codec_context.name, "pix_fmt": s.codec_context.pix_fmt, "width": s.width,
                "height": s.height, "rate": float(s.average_rate or 0), "sar": s.sample_aspect_ratio,
                "rotation": frames[0].rotation if frames else 0, "format": c.format.name}
    return frames, info


def colour_error(clip: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(largest per-channel mean difference, mean abs difference over an 8x8 grid of cell means), in
    0..255 levels, with ``truth`` resized to the clip's size."""
    h, w = clip.shape[:2]
    t = cv2.resize(truth.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA).astype(np.float64)
    mean = float(np.abs(clip.reshape(-1, 3).mean(0) - t.reshape(-1, 3).mean(0)).max())
    gc = cv2.resize(clip.astype(np.float32), (8, 8), interpolation=cv2.INTER_AREA)
    gt = cv2.resize(t.astype(np.float32), (8, 8), interpolation=cv2.INTER_AREA)
    return mean, float(np.abs(gc - gt).mean())


def _mp4s(tars) -> dict[str, bytes]:
    """clip_id -> mp4 of every clip in ``tars``."""
    mp4s = {}
    for tar in sorted(tars):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".mp4"):
                    mp4s[m.name.rsplit("/", 1)[-1][:-4]] = tf.extractfile(m).read()
    return mp4s


def shard_mp4s(out: Path) -> dict[str, bytes]:
    """clip_id -> mp4 of every published clip."""
    return _mp4s((out / "shards").glob("*.tar"))


def work_mp4s(out: Path) -> dict[str, bytes]:
    """clip_id -> mp4 of every transcoded clip, removed ones too (the work shards)."""
    return _mp4s((out / "_work").rglob("*.tar"))


def source_times(path: Path) -> list[float]:
    """Presentation time of every frame of a source, s."""
    with av.open(str(path)) as c:
        return [f.time for f in c.decode(c.streams.video[0]) if f.time is not None]


def display_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a source as a player shows it: RGB by its tags (numpy), turned upright by its
    display matrix and stretched to square pixels by its sample aspect ratio."""
    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        sar = float(s.sample_aspect_ratio or 1) or 1.0
        for f in c.decode(s):
            img = to_rgb(f).astype(np.float32)
            k = (int(round(f.rotation or 0)) // 90) % 4  # counter-clockwise, as np.rot90 turns
            img = np.ascontiguousarray(np.rot90(img, k=k)) if k else img
            if abs(sar - 1) > 1e-3:
                img = cv2.resize(img, (int(round(img.shape[1] * sar)), img.shape[0]), interpolation=cv2.INTER_AREA)
            out.append(img)
    return out


def judge_clip(clip: dict, mp4: bytes, reference: list[np.ndarray], mean_tol: float = 2.0,
               grid_tol: float = 3.0, times: list[float] | None = None) -> dict:
    """What is wrong with one clip (an empty ``problems`` list when nothing is) and its measurements.
    ``reference``: the source's frames as a player shows them (``display_frames``), or for HDR the SDR
    picture it was made from; ``times``: the source's frame times (``source_times``): clip frame i is
    then judged against the source frame on screen ``i / rate`` after the clip's first, and the clip must
    last as long as its span of the source (a variable-rate source is retimed, not counted)."""
    problems = []
    frames, info = clip_frames(mp4)
    if info["codec"] != "h264" or info["pix_fmt"] != "yuv420p":
        problems.append(f"{info['codec']}/{info['pix_fmt']}, not h264/yuv420p")
    if info["width"] % 2 or info["height"] % 2:
        problems.append(f"odd size {info['width']}x{info['height']}")
    if info["rotation"]:
        problems.append(f"rotation tag {info['rotation']}")
    if info["sar"] not in (None, 0, 1):
        problems.append(f"sar {info['sar']}")
    n = int(clip.get("num_frames") or 0)
    if len(frames) != n:
        problems.append(f"{len(frames)} frames decoded, the table says {n}")
    a, b = int(clip["start_frame"]), int(clip["end_frame"])
    capped = info["rate"] and float(clip.get("src_fps") or 0) > info["rate"] + 1e-3
    if times and info["rate"] and not capped:
        span = times[min(b, len(times)) - 1] - times[a] + 1 / info["rate"]
        if abs(n / info["rate"] - span) > 1.01 / info["rate"]:
            problems.append(f"{n} frames at {info['rate']:.3f} fps for {span:.3f} s of source")
    elif info["rate"] and not capped and n != b - a:
        problems.append(f"{n} frames for the {b - a} source frames planned")
    dur = float(clip.get("duration_s") or 0)
    if info["rate"] and abs(len(frames) / info["rate"] - dur) > 1.5 / info["rate"]:
        problems.append(f"{len(frames)} frames at {info['rate']:.3f} fps != duration_s {dur:.3f}")
    try:
        import decord

        vr = decord.VideoReader(io.BytesIO(mp4))
        if len(vr) != len(frames):
            problems.append(f"decord reads {len(vr)} frames, PyAV {len(frames)}")
    except Exception as exc:  # noqa: BLE001 - a clip decord cannot read is the finding
        problems.append(f"decord: {type(exc).__name__}: {exc}")
    worst = grid = 0.0
    if reference and frames:
        th, tw = reference[0].shape[:2]
        if abs(info["width"] / info["height"] - tw / th) > 0.04 * tw / th + 2.0 / info["height"]:
            problems.append(f"aspect {info['width']}x{info['height']} != source shown at {tw}x{th}")
        # clip frame i is source frame start_frame + i (decimated: i * the rate ratio)
        step = max(1.0, float(clip.get("src_fps") or info["rate"]) / info["rate"]) if info["rate"] else 1.0
        for i in sorted({0, len(frames) // 2, len(frames) - 1}):
            j = min(len(reference) - 1, a + int(round(i * step)))
            if times and not capped:
                # the source frame on screen at clip time i / rate: the first in that output interval, or
                # over a hole in the source's times the last one before it
                slots = np.round((np.asarray(times[a:b]) - times[a]) * info["rate"]).astype(int)
                shown = i if (slots == i).any() else int(slots[slots < i].max())
                j = a + int(np.argmax(slots == shown))
            m, g = colour_error(to_rgb(frames[i]), reference[j])
            worst, grid = max(worst, m), max(grid, g)
        if worst > mean_tol or grid > grid_tol:
            problems.append(f"colours: mean off by {worst:.1f} levels, 8x8 cells by {grid:.1f}")
    return {"problems": problems, "mean_err": round(worst, 2), "grid_err": round(grid, 2), **info}


def tolerance(made, clip: dict) -> tuple[float, float]:
    """(mean, 8x8 cell) tolerance in levels: the encoder's own loss is larger on a few pixels (an 8x8
    clip's chroma is 4x4), and tone mapping is judged against the SDR picture, not a formula."""
    if made.hdr:
        return 8.0, 12.0
    if min(int(clip.get("width") or 0), int(clip.get("height") or 0)) < 32:
        return 6.0, 10.0
    return 2.0, 3.0


def judge_build(out: Path, made: dict) -> list[dict]:
    """One record per input: its video row, and every transcoded clip judged (kept and removed)."""
    import pyarrow.parquet as pq

    videos = {Path(r["path"]).name: r for r in pq.read_table(out / "videos.parquet").to_pylist()}
    clips = pq.read_table(out / "clips.parquet").to_pylist()
    published = shard_mp4s(out)
    mp4s = work_mp4s(out) | published
    report = []
    for name, m in made.items():
        row = videos.get(m.path.name)
        rec = {"case": name, "file": m.path.name, "expect": m.expect, "problems": []}
        if row is None:
            rec["problems"].append("no row in videos.parquet")
            report.append(rec)
            continue
        rec.update(status=row["status"], reason=row.get("reason") or "")
        mine = [c for c in clips if Path(c["video_path"]).name == m.path.name]
        ref = times = None
        rec["clips"] = {s: sum(c["status"] == s for c in mine) for s in ("ok", "filtered", "failed")}
        rec["reasons"] = sorted({(c.get("reason") or "")[:90] for c in mine if c["status"] != "ok"})
        if m.expect == "failed":
            if row["status"] != "failed" or not rec["reason"]:
                rec["problems"].append(f"expected a failed row with a reason, got {row['status']!r}")
        elif row["status"] != "ok":
            rec["problems"].append(f"video {row['status']}: {rec['reason']}")
        elif m.expect == "ok" and not mine:
            rec["problems"].append("no clip planned")
        for c in mine:
            if c["status"] == "failed":
                rec["problems"].append(f"clip failed: {c.get('reason')}")
            if c["status"] == "ok" and c["clip_id"] not in published:
                rec["problems"].append(f"kept clip {c['clip_id']} not in the shards")
            for k, v in c.items():  # every score and measurement: no NaN or infinity
                if isinstance(v, float) and not np.isfinite(v):
                    rec["problems"].append(f"{c['status']} clip: {k} = {v}")
            mp4 = mp4s.get(c["clip_id"])
            if mp4:
                if ref is None:  # HDR: the SDR picture it was made from, tone mapping judged loosely
                    ref = m.truth if m.hdr else display_frames(m.path)
                    times = source_times(m.path)
                j = judge_clip(c, mp4, ref, *tolerance(m, c), times=times)
                rec.setdefault("judged", []).append({"clip": c["clip_id"], "status": c["status"], **{
                    k: j[k] for k in ("mean_err", "grid_err", "width", "height")}})
                rec["problems"] += j["problems"]
        report.append(rec)
    return report


def summary_lines(report: list[dict]) -> list[str]:
    lines = []
    for r in report:
        clips = r.get("clips", {})
        errs = [(j["mean_err"], j["grid_err"]) for j in r.get("judged", [])]
        col = f"{max(e[0] for e in errs):.1f}/{max(e[1] for e in errs):.1f}" if errs else "-"
        lines.append(f"{r['case']:20s} {r.get('status', '?'):6s} ok={clips.get('ok', 0)} "
                     f"filt={clips.get('filtered', 0)} fail={clips.get('failed', 0)} colour={col:11s} "
                     f"{'; '.join(r['problems'])[:200] or 'OK'}  | {r.get('reason', '')[:80]}")
    return lines


if __name__ == "__main__":
    import pickle
    import sys

    made = pickle.load(open(sys.argv[2], "rb"))
    rep = judge_build(Path(sys.argv[1]), made)
    print("\n".join(summary_lines(rep)))
    json.dump(rep, open(Path(sys.argv[1]) / "formats_judged.json", "w"), indent=1, default=str)
