"""The text_overlay thresholds on footage they were not tuned on (issue 11).

The defaults were chosen on ``bench/data/filter_labels.yaml``; this scores two sets that are not in it:

- **re-encodes**: every real clip of the labelled set, re-encoded at other settings (``REENCODES``:
  other codecs, sizes and much lower quality than the originals); re-encoding adds no text, so the
  labels carry over;
- **fresh overlays**: lines drawn with PIL in TrueType fonts (DejaVu / Liberation sans, serif, mono;
  bold, italic, condensed), at random sizes, positions, colours and styles (outline, shadow, a dark
  box, translucent), in four kinds (bottom subtitles, top captions, centred titles, corner watermarks),
  over samples backgrounds (textures and colours drawn from another seed than the labelled set's) and
  over text-free real frames of ../shared/media; the same backgrounds without text are the negatives.
  Every clip is H.264-encoded (crf 23) and decoded before scoring, as a build's transcode does;
- **brief subtitles**: 4-s clips (96 frames) with a subtitle shown for 1 s of them at a random time
  (drawn like the above, from another seed): the case a persistence rule could lose, as only one or
  two of the sampled frames show it.

Each detector variant runs through the text_overlay stage at its defaults otherwise:

    .venv/bin/python bench/filter_holdout.py [--seed 11] [--overlays 48] [--brief 12] [--json out.json]
"""
from __future__ import annotations

import argparse
import io
import json
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from filter_set import Entry, _row, load_entries, real_frames

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
# (name, codec, short side, encoder options, bit rate): none of these is how ../shared's files are encoded
REENCODES = (
    ("h264_360p_crf38", "libx264", 360, {"crf": "38", "preset": "veryfast"}, 0),
    ("mpeg4_240p_250k", "mpeg4", 240, {}, 250_000),
    ("vp9_480p_crf55", "libvpx-vp9", 480, {"crf": "55", "b": "0", "deadline": "realtime", "cpu-used": "8"}, 0),
)
WORDS = ("the night was long and cold we never saw her again after the storm where are you going now "
         "tomorrow morning everything changes listen to me carefully breaking news live from the city "
         "chapter two episode four summer camp 1998 interview with a stranger quiet please the end").split()
SIZES = ((480, 270), (640, 360), (854, 480), (720, 540), (360, 640))  # 16:9, 4:3 and a portrait phone


def encode_decode(frames: list[np.ndarray], codec: str, short_side: int | None, options: dict,
                  bit_rate: int = 0, fps: int = 24) -> list[np.ndarray]:
    """``frames`` (RGB uint8) scaled to ``short_side`` (even sides), encoded in memory, decoded back."""
    h, w = frames[0].shape[:2]
    s = (short_side / min(h, w)) if short_side else 1.0
    ow, oh = max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2)
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = ow, oh, "yuv420p"
        if bit_rate:
            stream.bit_rate = bit_rate
        stream.options = dict(options)
        for f in frames:
            img = cv2.resize(f, (ow, oh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")))
        out.mux(stream.encode())
    buf.seek(0)
    with av.open(buf) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def reencoded_rows(entries: list[Entry], shared: Path, k: int) -> list[tuple[str, dict, bool]]:
    """(set name, row, has text) for each real entry under each of REENCODES."""
    out = []
    for e in entries:
        frames = real_frames(e, shared)
        for name, codec, side, opts, rate in REENCODES:
            row = _row(e, encode_decode(frames, codec, side, opts, rate), k)
            out.append((f"re-encode {name}", dict(row, clip_id=f"{e.id}@{name}"), e.text))
    return out


def _fonts() -> list[Path]:
    fonts = sorted(p for d in FONT_DIRS if d.is_dir() for p in d.glob("*.ttf"))
    if not fonts:
        raise SystemExit(f"no TrueType fonts under {[str(d) for d in FONT_DIRS]} (apt-get install fonts-dejavu)")
    return fonts


def draw_overlay(frames: list[np.ndarray], kind: str, rng: np.random.Generator, fonts: list[Path]) -> str:
    """Draw one overlay of ``kind`` on every frame (in place, the same place in each: burnt-in text);
    returns a description."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = frames[0].shape[:2]
    font_path = fonts[rng.integers(len(fonts))]
    frac = {"subtitle": (0.045, 0.08), "caption": (0.04, 0.07), "title": (0.09, 0.18),
            "watermark": (0.035, 0.05)}[kind]
    size = max(9, int(min(h, w) * rng.uniform(*frac)))
    font = ImageFont.truetype(str(font_path), size)
    n_words = {"subtitle": (3, 8), "caption": (2, 5), "title": (1, 3), "watermark": (1, 2)}[kind]
    n_lines = int(rng.integers(1, 3)) if kind in ("subtitle", "title") else 1
    lines = [" ".join(rng.choice(WORDS, int(rng.integers(*n_words)))) for _ in range(n_lines)]
    if kind in ("caption", "title") and rng.random() < 0.5:
        lines = [line.upper() for line in lines]
    style = str(rng.choice(["outline", "shadow", "box", "plain", "translucent"]))
    probe = ImageDraw.Draw(Image.new("RGB", (w, h)))
    boxes = [probe.textbbox((0, 0), line, font=font) for line in lines]
    lw, lh = max(b[2] - b[0] for b in boxes), int(size * 1.25)
    # lines wider than the frame shrink the font once: a subtitle that leaves the frame is not a subtitle
    if lw > 0.95 * w:
        font = ImageFont.truetype(str(font_path), max(9, int(size * 0.95 * w / lw)))
        boxes = [probe.textbbox((0, 0), line, font=font) for line in lines]
        lw, lh = max(b[2] - b[0] for b in boxes), int(font.size * 1.25)
    th = lh * len(lines)
    margin = int(0.04 * h)
    if kind == "subtitle":
        x, y = (w - lw) // 2, h - margin - th - int(rng.integers(0, max(1, margin)))
    elif kind == "caption":
        x, y = margin + int(rng.integers(0, margin + 1)), margin + int(rng.integers(0, 2 * margin + 1))
    elif kind == "title":
        x, y = (w - lw) // 2, (h - th) // 2 + int(rng.integers(-h // 8, h // 8 + 1))
    else:  # a corner
        x = margin if rng.random() < 0.5 else w - margin - lw
        y = margin if rng.random() < 0.5 else h - margin - th
    x, y = max(0, x), max(0, y)
    # overlays are made to be read: light letters on a dark place, dark on a light one (a box or an
    # outline carries either)
    luma = float(np.mean(frames[0][y:y + th, x:x + lw]))
    light = [(255, 255, 255), (250, 230, 60), (120, 220, 255)]
    choices = light + [(20, 20, 20)] if style in ("outline", "box") else light if luma < 128 else [(20, 20, 20)]
    colour = tuple(int(c) for c in choices[rng.integers(len(choices))])
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    dark = (0, 0, 0) if sum(colour) > 300 else (255, 255, 255)
    alpha = int(rng.uniform(110, 180)) if style == "translucent" or kind == "watermark" else 255
    if style == "box":
        d.rectangle([x - 6, y - 4, x + lw + 6, y + th + 4], fill=(*dark, 160))
    for i, line in enumerate(lines):
        lx = x + (lw - (boxes[i][2] - boxes[i][0])) // 2
        ly = y + i * lh
        if style == "shadow":
            d.text((lx + 2, ly + 2), line, font=font, fill=(*dark, alpha))
        stroke = max(1, font.size // 12) if style == "outline" else 0
        d.text((lx, ly), line, font=font, fill=(*colour, alpha), stroke_width=stroke, stroke_fill=(*dark, alpha))
    for f in frames:
        img = Image.fromarray(f).convert("RGBA")
        f[:] = np.asarray(Image.alpha_composite(img, layer).convert("RGB"))
    return f"{kind} {font_path.stem} {font.size}px {style} {'|'.join(lines)!r}"


def overlay_rows(n: int, seed: int, shared: Path | None, k: int) -> list[tuple[str, dict, bool]]:
    """``n`` clips with a fresh overlay and ``n // 2`` without, on samples or real text-free backgrounds."""
    from reelforge.samples import BACKGROUNDS, ShotSpec, VideoSpec, render_frames

    rng, fonts = np.random.default_rng(seed), _fonts()
    real_bg = []
    if shared is not None and (shared / "media").is_dir():
        real_bg = [e for e in load_entries() if e.real and not e.text]
    cache: dict[str, list[np.ndarray]] = {}
    out = []
    for i in range(n + n // 2):
        kind = ("subtitle", "caption", "title", "watermark")[i % 4] if i < n else "none"
        if real_bg and rng.random() < 0.4:
            e = real_bg[rng.integers(len(real_bg))]
            if e.id not in cache:
                cache[e.id] = real_frames(e, shared)
            src = cache[e.id]
            s0 = int(rng.integers(0, max(1, len(src) - 24)))
            frames, bg = [f.copy() for f in src[s0:s0 + 24]], f"real {e.id}"
        else:
            w, h = SIZES[rng.integers(len(SIZES))]
            shot = ShotSpec(24, str(rng.choice(BACKGROUNDS)), tuple(int(c) for c in rng.integers(20, 236, 3)),
                            str(rng.choice(["circle", "square"])), motion=str(rng.choice(["object", "pan", "jitter"])))
            frames = list(render_frames(VideoSpec(f"h{i}", [shot], width=w, height=h, fps=24.0,
                                                  seed=seed * 1000 + i)))
            bg = f"{shot.background} {w}x{h}"
        desc = draw_overlay(frames, kind, rng, fonts) if kind != "none" else "no text"
        frames = encode_decode(frames, "libx264", None, {"crf": "23", "preset": "veryfast"})
        entry = Entry(id=f"ov{i:03d}", text=kind != "none", unsafe=False)
        row = dict(_row(entry, frames, k), note=f"{bg}: {desc}")
        out.append((f"overlay {kind}", row, kind != "none"))
    return out


def brief_rows(n: int, seed: int, shared: Path | None, k: int, fps: int = 24) -> list[tuple[str, dict, bool]]:
    """``n`` 4-s clips with a subtitle on 1 s of them (at a random start), on samples or real text-free
    backgrounds (a real span shorter than 4 s is used whole, the subtitle still 1 s)."""
    from reelforge.samples import BACKGROUNDS, ShotSpec, VideoSpec, render_frames

    rng, fonts = np.random.default_rng(seed + 1000), _fonts()
    real_bg = []
    if shared is not None and (shared / "media").is_dir():
        real_bg = [e for e in load_entries() if e.real and not e.text]
    out = []
    for i in range(n):
        if real_bg and rng.random() < 0.4:
            e = real_bg[rng.integers(len(real_bg))]
            src = real_frames(e, shared)
            s0 = int(rng.integers(0, max(1, len(src) - 4 * fps)))
            frames, bg = [f.copy() for f in src[s0:s0 + 4 * fps]], f"real {e.id}"
        else:
            w, h = SIZES[rng.integers(len(SIZES))]
            shot = ShotSpec(4 * fps, str(rng.choice(BACKGROUNDS)), tuple(int(c) for c in rng.integers(20, 236, 3)),
                            str(rng.choice(["circle", "square"])), motion=str(rng.choice(["object", "pan", "jitter"])))
            frames = list(render_frames(VideoSpec(f"b{i}", [shot], width=w, height=h, fps=float(fps),
                                                  seed=seed * 1000 + 500 + i)))
            bg = f"{shot.background} {w}x{h}"
        t0 = int(rng.integers(0, max(1, len(frames) - fps + 1)))
        desc = draw_overlay(frames[t0:t0 + fps], "subtitle", rng, fonts)
        frames = encode_decode(frames, "libx264", None, {"crf": "23", "preset": "veryfast"})
        row = dict(_row(Entry(id=f"brief{i:02d}", text=True, unsafe=False), frames, k),
                   note=f"{bg}, {len(frames)} frames, text in {t0}-{t0 + fps}: {desc}")
        out.append(("brief subtitle (1 s of 4)", row, True))
    return out


VARIANTS = {  # name -> TextOverlayConfig overrides
    "default: read, at one place in 2 frames": {},
    "every read box (persist_frames 1, before)": {"persist_frames": 1},
    "boxes under 0.6 read": {"sure_box_thresh": 0.6, "persist_frames": 1},
    "no reading, box_thresh 0.6 (before reading)": {"box_thresh": 0.6, "sure_box_thresh": 0.6, "persist_frames": 1},
    "no reading, box_thresh 0.5": {"sure_box_thresh": 0.5, "persist_frames": 1},
    "no reading, box_thresh 0.5, 2 frames": {"sure_box_thresh": 0.5},
}


def evaluate(items: list[tuple[str, dict, bool]], batch: int = 8, variants: list[str] | None = None) -> dict:
    from reelforge.curate.stage import REMOVED_EARLY, rows_to_batch
    from reelforge.curate.stages.borders import BordersStage
    from reelforge.curate.stages.text_overlay import TextOverlayConfig, TextOverlayStage

    b = BordersStage()(rows_to_batch([r for _, r, _ in items]))
    b.pop(REMOVED_EARLY, None)  # the crop box only: every clip is scored (see filter_set.rows)
    rows = [{key: b[key][i] for key in b} for i in range(len(items))]
    results = {}
    for name, over in VARIANTS.items():
        if variants and name not in variants:
            continue
        cfg = TextOverlayConfig(**over)
        stage = TextOverlayStage(cfg)
        c0, scored = time.process_time(), []
        for i in range(0, len(rows), batch):
            out = stage(rows_to_batch([dict(r) for r in rows[i:i + batch]]))
            scored += [{key: out[key][j] for key in out} for j in range(len(out["clip_id"]))]
        cpu = (time.process_time() - c0) / len(rows)
        per_set: dict[str, dict] = {}
        for (set_name, _, truth), r in zip(items, scored):
            s = per_set.setdefault(set_name, {"clips": 0, "text": 0, "found": 0, "caught": 0, "false_drops": 0,
                                              "wrong": []})
            dropped = cfg.check(r) is not None
            s["clips"] += 1
            s["text"] += truth
            s["found"] += truth and r["text_boxes"] > 0
            s["caught"] += truth and dropped
            s["false_drops"] += dropped and not truth
            if dropped != truth:
                s["wrong"].append(f"{r['clip_id']} ({r['text_area']:.4f}, all {r['text_area_all']:.4f}; "
                                  f"{r.get('note', '')})")
        results[name] = {"cpu_s_per_clip": cpu, "read": stage.detector.read, "confirmed": stage.detector.confirmed,
                         "extra_frames": stage.extra_frames, "sets": per_set}
    return results


def report(results: dict) -> None:
    for name, res in results.items():
        print(f"\n-- {name}: {res['cpu_s_per_clip']:.3f} CPU s/clip; candidate boxes read {res['read']}, "
              f"confirmed {res['confirmed']}; neighbour frames detected {res['extra_frames']}")
        print(f"{'set':<28s} {'clips':>5s} {'with text':>9s} {'found':>6s} {'dropped':>7s} {'false drops':>11s}")
        for set_name, s in sorted(res["sets"].items()):
            print(f"{set_name:<28s} {s['clips']:5d} {s['text']:9d} {s['found']:6d} {s['caught']:7d} "
                  f"{s['false_drops']:11d}")
            for w in s["wrong"]:
                print(f"{'':<6s}wrong: {w}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--overlays", type=int, default=48, help="clips with text (and half as many without)")
    ap.add_argument("--brief", type=int, default=12, help="4-s clips with a 1-s subtitle")
    ap.add_argument("--frames", type=int, default=8, help="K sampled frames per clip")
    ap.add_argument("--only", choices=("all", "reencode", "overlays", "brief"), default="all")
    ap.add_argument("--variants", default="", help="variant names joined by '|' (default: all): "
                    + " | ".join(VARIANTS))
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    shared = Path(args.shared)
    have_media = (shared / "media").is_dir()
    t0 = time.perf_counter()
    items = []
    if args.only in ("all", "reencode"):
        if have_media:
            items += reencoded_rows([e for e in load_entries() if e.real], shared, args.frames)
        else:
            print(f"{shared}/media is absent: no re-encodes")
    if args.only in ("all", "overlays"):
        items += overlay_rows(args.overlays, args.seed, shared if have_media else None, args.frames)
    if args.only in ("all", "brief") and args.brief:
        items += brief_rows(args.brief, args.seed, shared if have_media else None, args.frames)
    print(f"== text_overlay on held-out footage: {len(items)} clips built in {time.perf_counter() - t0:.0f} s, "
          f"K={args.frames}, seed {args.seed} ==")
    results = evaluate(items, variants=[v for v in args.variants.split("|") if v] or None)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
