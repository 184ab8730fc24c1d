"""``reelforge report DATASET``: one self-contained HTML page on a built dataset's quality.

Reads what a build leaves behind (``clips.parquet``, ``videos.parquet``, ``summary.json``, ``config.yaml``,
``shards/*.tar`` for kept clips, ``_work/shards/*.tar`` for removed ones) and writes ``DATASET/report.html`` (inline CSS, inline SVG charts drawn here, JPEG
thumbnails as ``data:`` URIs: no JavaScript, no network) and ``DATASET/report.json`` (the numbers behind it).

Every part is optional: a missing file or column leaves its section saying so, never a crash.

Thresholds drawn on the histograms come from ``config.yaml`` (``curate.filters.<stage>``). Which score
column a ``min_*``/``max_*`` key bounds is read from the stage config's own ``check``: each enabled section
is asked to judge a row holding one score at -1e30 or +1e30, and its message (``"motion: motion_mean=... <
min 0.0005"``) names the column and the bound; the key is the ``min_*``/``max_*`` field holding that value.
So a new filter's bounds appear with no table to update. Dedup's check needs a pair of columns, so its
``threshold`` -> ``dedup_cosine`` is the one explicit entry.
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime as dt
import html
import io
import json
import math
import re
import typing
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from reelforge.config import ConfigError, from_dict
from reelforge.curate.filters import CHECK_COLUMNS, FILTER_ORDER, FiltersConfig, filter_name
from reelforge.curate.stage_list import STAGES

# Score columns in pipeline order (the flat stage list): what the scoring stages add, plus dedup's cosine.
# Crop coordinates are geometry, not scores; duration/fps/resolution get their own section.
_SCORERS = tuple(e.cls for e in STAGES if e.cls is not None and e.sections and e.sections[0].startswith("filters."))
_NOT_SCORES = {"crop_x0", "crop_y0", "crop_x1", "crop_y1", "duration_s", "fps", "clip_embedding", "aesthetic_skip",
               "frame_signature", "nsfw_exposed_class"}
SCORE_COLUMNS = tuple(dict.fromkeys(
    [c for s in _SCORERS for c in s.outputs if c not in _NOT_SCORES]
    + [c for c in CHECK_COLUMNS if c not in _NOT_SCORES and c not in ("dedup_of", "near_dup_of")]))

# what the report reads of each table
CLIP_COLUMNS = tuple(dict.fromkeys(("clip_id", "video_path", "status", "reason", "shard", "work_shard", "start_s", "end_s",
                                    "duration_s", "width", "height", "fps", "num_frames")
                                   + SCORE_COLUMNS + tuple(CHECK_COLUMNS)))
VIDEO_COLUMNS = ("path", "status", "reason", "duration_s", "width", "height", "fps", "codec", "num_clips",
                 "num_clips_ok")

KEPT, REMOVED = "#3f8f5f", "#e08a4f"  # bar colours: kept clips, clips some filter removed


# ---- loading --------------------------------------------------------------------------------------

def _read_rows(path: Path, notes: list[str], columns: tuple[str, ...]) -> tuple[list[dict], pa.Schema | None]:
    """The rows of a parquet file, only ``columns`` (those it has): captions, embeddings and frame lists stay
    on disk, so a large dataset's report does not hold every column of every clip in memory."""
    if not path.is_file():
        notes.append(f"no {path.name}")
        return [], None
    try:
        have = set(pq.read_schema(path).names)
        table = pq.read_table(path, columns=[c for c in columns if c in have])
    except Exception as exc:  # a torn file still gets a report that says so
        notes.append(f"{path.name} unreadable: {type(exc).__name__}: {exc}")
        return [], None
    return table.to_pylist(), table.schema


def _read_json(path: Path, notes: list[str]) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        notes.append(f"{path.name} unreadable: {exc}")
        return {}


@dataclass(frozen=True)
class Bound:
    column: str   # score column it bounds
    section: str  # filter section in config.yaml
    key: str      # config key, e.g. min_motion
    kind: str     # "min": lower values are removed; "max": higher values are removed
    value: float


_BOUND_MSG = re.compile(r"^\w+: (\w+)=\S+ [<>] (min|max) (\S+)$")


def filter_sections(config: dict, notes: list[str]) -> dict[str, object]:
    """Enabled filter sections of ``config.yaml`` as their config dataclasses (a bad section is noted, skipped)."""
    hints = typing.get_type_hints(FiltersConfig)
    raw = ((config.get("curate") or {}).get("filters") or {}) if isinstance(config, dict) else {}
    out = {}
    for name in FILTER_ORDER:
        if name not in raw:
            continue
        try:
            section = from_dict(hints[name], raw[name], prefix=f"curate.filters.{name}")
        except ConfigError as exc:
            notes.append(f"config section curate.filters.{name} not understood ({exc}): its thresholds are not drawn")
            continue
        if section.enabled:
            out[name] = section
    return out


def section_bounds(name: str, section) -> list[Bound]:
    """The bounds ``section.check`` enforces, found by probing it (see the module docstring)."""
    if name == "dedup":
        return [Bound("dedup_cosine", "dedup", "threshold", "max", float(section.threshold))]
    keys = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)
            if f.name.startswith(("min_", "max_")) and isinstance(getattr(section, f.name), (int, float))}
    bounds = []
    for column in CHECK_COLUMNS:
        for probe in (-1e30, 1e30):
            try:
                why = section.check({column: probe})
            except Exception:  # a check that needs more than one column: not a simple bound
                continue
            m = _BOUND_MSG.match(why or "")
            if not m or m.group(1) != column:
                continue
            kind, shown = m.group(2), float(m.group(3))
            # the message rounds to 4 significant digits; prefer the key named like the column
            cands = [k for k, v in keys.items() if k.startswith(kind + "_") and float(f"{v:.4g}") == shown]
            cands.sort(key=lambda k: k.split("_", 1)[1] not in column)
            key = cands[0] if cands else f"{kind}_?"
            bounds.append(Bound(column, name, key, kind, float(keys[key]) if cands else shown))
    return bounds


# ---- numbers --------------------------------------------------------------------------------------

def funnel_numbers(clips: list[dict], videos: list[dict], summary: dict) -> dict:
    """Planned clips -> removals per filter in pipeline order -> failed -> kept, and whether it adds up."""
    status = Counter(r.get("status") for r in clips)
    removed_all = Counter(filter_name(r.get("reason")) for r in clips if r.get("status") == "filtered")
    # stages outside FILTER_ORDER (the splitter dropping short spans) act before any filter
    order = [n for n in removed_all if n not in FILTER_ORDER] + list(FILTER_ORDER)
    removed = {n: removed_all.get(n, 0) for n in order}
    planned, kept, failed = len(clips), status.get("ok", 0), status.get("failed", 0)
    other = {str(k): v for k, v in status.items() if k not in ("ok", "filtered", "failed")}
    warnings = []
    if planned != kept + sum(removed.values()) + failed:
        warnings.append(f"planned {planned} != kept {kept} + removed {sum(removed.values())} + failed {failed}"
                        f" (rows with other statuses: {other})")
    if summary:
        # summary.json is written with clips.parquet (build and --refilter): they must agree
        want = {"planned": summary.get("clips"), "kept": summary.get("clips_ok")}
        want.update({f"removed by {k}": v for k, v in (summary.get("funnel") or {}).items()})
        have = {"planned": planned, "kept": kept, **{f"removed by {k}": v for k, v in removed.items()}}
        for k, v in want.items():
            if v is not None and have.get(k, 0) != v:
                warnings.append(f"summary.json says {k} = {v}, clips.parquet has {have.get(k, 0)}")
    if videos and any("num_clips" in v for v in videos):
        per_video = sum(int(v.get("num_clips") or 0) for v in videos)
        if per_video != planned:
            warnings.append(f"videos.parquet num_clips sums to {per_video}, clips.parquet has {planned} rows")
    failed_by = Counter(str(r.get("reason") or "?").split(":", 1)[0] for r in clips if r.get("status") == "failed")
    return {"planned": planned, "removed": removed, "failed": failed, "failed_by_stage": dict(failed_by),
            "kept": kept, "adds_up": not warnings, "warnings": warnings}


def _finite(values) -> np.ndarray:
    a = np.array([float(v) for v in values if v is not None and not isinstance(v, (str, bool))], dtype=float)
    return a[np.isfinite(a)]


def histogram(clips: list[dict], column: str, bounds: list[Bound], bins: int = 30) -> dict | None:
    """Counts of kept and removed clips per bin (failed clips have no scores), on a log axis when the
    values span more than three decades (motion); the x range stretches to show nearby thresholds."""
    rows = [r for r in clips if r.get("status") in ("ok", "filtered")]
    kept = _finite(r.get(column) for r in rows if r.get("status") == "ok")
    gone = _finite(r.get(column) for r in rows if r.get("status") == "filtered")
    allv = np.concatenate([kept, gone])
    if allv.size == 0:
        return None
    pos = allv[allv > 0]
    log = bool(allv.min() >= 0 and pos.size and pos.size >= allv.size / 2 and pos.max() / pos.min() > 1e3)
    floor = float(pos.min()) if log else 0.0
    f = (lambda x: np.log10(np.maximum(x, floor))) if log else (lambda x: x)
    lo, hi = float(f(allv).min()), float(f(allv).max())
    span = hi - lo or (abs(lo) * 0.2 or 1.0)
    if hi == lo:  # one value: centre it in a bin of its own
        lo, hi = lo - span / 2, hi + span / 2
    for b in bounds:  # a threshold within half a span of the data is worth seeing in place
        v = (math.log10(b.value) if b.value > 0 else None) if log else b.value
        if v is not None and lo - span / 2 <= v <= hi + span / 2:
            lo, hi = min(lo, v), max(hi, v)
    edges = np.linspace(lo, hi, bins + 1)
    q = np.quantile(allv, [0.05, 0.5, 0.95])
    return {"column": column, "log": log, "edges": edges.tolist(),
            "kept": np.histogram(np.clip(f(kept), lo, hi), edges)[0].tolist() if kept.size else [0] * bins,
            "removed": np.histogram(np.clip(f(gone), lo, hi), edges)[0].tolist() if gone.size else [0] * bins,
            "n": int(allv.size), "zeros_in_first_bin": int((allv <= 0).sum()) if log else 0,
            "min": float(allv.min()), "p5": float(q[0]), "median": float(q[1]), "p95": float(q[2]),
            "max": float(allv.max()), "mean": float(allv.mean()),
            "thresholds": [dataclasses.asdict(b) for b in bounds]}


def numeric_columns(schema: pa.Schema | None) -> set[str]:
    if schema is None:
        return set()
    return {f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)}


# ---- SVG --------------------------------------------------------------------------------------------

def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    return f"{v:.3g}" if 1e-4 <= abs(v) < 1e5 else f"{v:.1e}"


def svg_histogram(h: dict, title: str, width: int = 380, height: int = 190) -> str:
    left, right, top, bottom = 38, 16, 30, 36
    pw, ph = width - left - right, height - top - bottom
    edges, kept, gone = h["edges"], h["kept"], h["removed"]
    lo, hi = edges[0], edges[-1]
    peak = max([k + g for k, g in zip(kept, gone)] + [1])
    x = lambda v: left + (v - lo) / (hi - lo) * pw  # noqa: E731
    y = lambda c: top + ph - c / peak * ph  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="chart" '
           f'data-column="{html.escape(h["column"])}">',
           f'<text x="{left}" y="14" class="t">{html.escape(title)}</text>',
           f'<text x="{width - right}" y="14" class="s" text-anchor="end">n={h["n"]}'
           f'{" · log x" if h["log"] else ""}</text>']
    for i, (k, g) in enumerate(zip(kept, gone)):
        x0, x1 = x(edges[i]) + 0.5, x(edges[i + 1]) - 0.5
        if k:
            out.append(f'<rect x="{x0:.1f}" y="{y(k):.1f}" width="{x1 - x0:.1f}" height="{ph - (y(k) - top):.1f}" '
                       f'fill="{KEPT}"><title>kept {k}</title></rect>')
        if g:
            out.append(f'<rect x="{x0:.1f}" y="{y(k + g):.1f}" width="{x1 - x0:.1f}" height="{y(k) - y(k + g):.1f}" '
                       f'fill="{REMOVED}"><title>removed {g}</title></rect>')
    out.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" class="ax"/>')
    out.append(f'<text x="{left - 4}" y="{top + 8}" class="s" text-anchor="end">{peak}</text>')
    out.append(f'<text x="{left - 4}" y="{top + ph}" class="s" text-anchor="end">0</text>')
    for i, t in enumerate(np.linspace(lo, hi, 5)):
        label = _fmt(10 ** t) if h["log"] else _fmt(float(t))
        anchor = ("start", "middle", "middle", "middle", "end")[i]  # end labels stay inside the box
        out.append(f'<text x="{x(t):.1f}" y="{top + ph + 14}" class="s" text-anchor="{anchor}">{label}</text>')
    if h["min"] == h["max"]:
        out.append(f'<text x="{width - right}" y="{top + 12}" class="s" text-anchor="end">'
                   f'all = {_fmt(h["min"])}</text>')
    for b in h["thresholds"]:
        v = math.log10(b["value"]) if h["log"] and b["value"] > 0 else (None if h["log"] else b["value"])
        label = f'{b["kind"]} {_fmt(b["value"])}'
        if v is None or not lo <= v <= hi:  # off the axis: an arrow at the side it lies on
            side_hi = v is not None and v > hi
            out.append(f'<text x="{left + pw if side_hi else left}" y="{top + ph + 29}" class="th" '
                       f'text-anchor="{"end" if side_hi else "start"}">{"" if side_hi else "← "}{label}'
                       f'{" →" if side_hi else ""}<title>{b["section"]}.{b["key"]} = {b["value"]} (off the axis)'
                       '</title></text>')
            continue
        xv = x(v)
        anchor = "end" if xv > left + pw * 0.6 else "start"
        dx = -3 if anchor == "end" else 3
        out.append(f'<line x1="{xv:.1f}" y1="{top - 6}" x2="{xv:.1f}" y2="{top + ph}" class="thl">'
                   f'<title>{b["section"]}.{b["key"]} = {b["value"]}</title></line>')
        out.append(f'<text x="{xv + dx:.1f}" y="{top + 2}" class="th" text-anchor="{anchor}">{label}</text>')
    out.append("</svg>")
    return "".join(out)


def svg_bars(items: list[tuple[str, int]], title: str, width: int = 380) -> str:
    """Horizontal bars for categories (resolutions)."""
    row, top, label_w = 18, 24, 90
    height = top + row * max(1, len(items)) + 6
    peak = max([n for _, n in items] + [1])
    pw = width - label_w - 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="chart">',
           f'<text x="4" y="14" class="t">{html.escape(title)}</text>']
    for i, (name, n) in enumerate(items):
        yy = top + i * row
        out.append(f'<text x="{label_w - 6}" y="{yy + 12}" class="s" text-anchor="end">{html.escape(name)}</text>')
        out.append(f'<rect x="{label_w}" y="{yy + 2}" width="{max(1.0, n / peak * pw):.1f}" height="{row - 5}" '
                   f'fill="{KEPT}"/>')
        out.append(f'<text x="{label_w + n / peak * pw + 4:.1f}" y="{yy + 12}" class="s">{n}</text>')
    out.append("</svg>")
    return "".join(out)


def svg_funnel(f: dict, width: int = 760) -> str:
    """Waterfall: the bar shrinks by each filter's removals; removed parts shown hatched at the right."""
    steps = [("planned", f["planned"], 0)]
    left = f["planned"]
    for name, n in f["removed"].items():
        steps.append((f"− {name}", left - n, n))
        left -= n
    steps.append(("− failed", left - f["failed"], f["failed"]))
    steps.append(("kept", f["kept"], 0))
    row, label_w, top = 22, 130, 6
    pw = width - label_w - 110
    peak = max(f["planned"], 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + row * len(steps) + 4}" '
           f'class="chart funnel">']
    for i, (name, remain, gone) in enumerate(steps):
        yy = top + i * row
        w_keep, w_gone = max(0, remain) / peak * pw, gone / peak * pw
        strong = name in ("planned", "kept")
        out.append(f'<text x="{label_w - 8}" y="{yy + 14}" class="{"t" if strong else "s"}" '
                   f'text-anchor="end">{html.escape(name)}</text>')
        out.append(f'<rect x="{label_w}" y="{yy + 3}" width="{w_keep:.1f}" height="{row - 6}" '
                   f'fill="{KEPT if strong else "#9fc5ad"}"/>')
        if gone:
            out.append(f'<rect x="{label_w + w_keep:.1f}" y="{yy + 3}" width="{max(w_gone, 1.5):.1f}" '
                       f'height="{row - 6}" fill="{REMOVED}"/>')
        text = f"{remain}" if strong else (f"−{gone} → {remain}" if gone else "0")
        out.append(f'<text x="{label_w + max(w_keep + w_gone, 0) + 6:.1f}" y="{yy + 14}" class="s">{text}</text>')
    out.append("</svg>")
    return "".join(out)


# ---- thumbnails ---------------------------------------------------------------------------------------

def clip_thumbnail(mp4: bytes, num_frames: int | None, box: tuple[int, int] = (112, 84)) -> bytes:
    """JPEG of the clip's first and middle frames side by side, each fitted into a ``box`` (w, h) cell on a
    dark ground, so portrait and landscape clips make tiles of one size: (h, 2w + 3, 3)."""
    import av
    import cv2

    first = middle = last = None
    mid_index = max(0, int(num_frames or 0) // 2)
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i == 0:
                first = frame.to_ndarray(format="rgb24")  # (H, W, 3)
            if i >= mid_index:
                middle = frame.to_ndarray(format="rgb24")
                break
            last = frame
    if first is None:
        raise ValueError("no video frames decoded")
    if middle is None:  # fewer frames than num_frames said
        middle = last.to_ndarray(format="rgb24") if last is not None else first
    bw, bh = box
    sheet = np.full((bh, 2 * bw + 3, 3), 24, np.uint8)
    sheet[:, bw:bw + 3] = 255
    for k, img in enumerate((first, middle)):
        scale = min(bw / img.shape[1], bh / img.shape[0])
        w, h = max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale))
        x0, y0 = k * (bw + 3) + (bw - w) // 2, (bh - h) // 2
        sheet[y0:y0 + h, x0:x0 + w] = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", sheet[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 72])
    if not ok:
        raise ValueError("JPEG encode failed")
    return data.tobytes()


@dataclass
class Group:
    title: str
    total: int
    shown: list[dict]     # up to per_group clips with media in a shard, evenly spread over the group
    no_media: list[dict]  # up to per_group clips without media (dropped before transcoding, failed)
    n_no_media: int


def _spread(rows: list[dict], n: int) -> list[dict]:
    if not rows:
        return []
    return [rows[i] for i in sorted(set(np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int)))]


def contact_groups(clips: list[dict], per_group: int) -> list[Group]:
    """Kept first, then each filter's removals in pipeline order (other stages after), then failed."""
    by = defaultdict(list)
    for r in clips:
        if r.get("status") == "ok":
            by["kept"].append(r)
        elif r.get("status") == "filtered":
            by[f"filtered · {filter_name(r.get('reason'))}"].append(r)
        elif r.get("status") == "failed":
            by["failed"].append(r)
    order = ["kept"] + [f"filtered · {n}" for n in FILTER_ORDER]
    order += sorted(k for k in by if k not in order and k != "failed") + ["failed"]
    out = []
    for title in order:
        rows = sorted(by.get(title, []), key=lambda r: (str(r.get("video_path")), r.get("start_s") or 0))
        if not rows:
            continue
        media = [r for r in rows if _where(r) and r.get("clip_id")]
        bare = [r for r in rows if not (_where(r) and r.get("clip_id"))]
        out.append(Group(title, len(rows), _spread(media, per_group), _spread(bare, per_group), len(bare)))
    return out


def _where(r: dict) -> str | None:
    """The tar holding a clip's media, relative to the dataset: kept clips are published under
    ``shards/``, removed ones stay in the build's work shards."""
    if r.get("shard"):
        return f"shards/{r['shard']}"
    if r.get("work_shard"):
        return f"_work/shards/{r['work_shard']}"
    return None


def thumbnails(dataset: Path, clips: list[dict]) -> dict[str, str]:
    """clip_id -> ``data:image/jpeg;base64,...`` or an error text. Each shard's headers are scanned once
    (work shards have no index) and the members read through ``shards.access`` like every other tool."""
    from reelforge.shards.access import ShardFiles
    from reelforge.shards.tarscan import scan_tar

    by_shard = defaultdict(dict)
    for r in clips:
        by_shard[_where(r)][r["clip_id"]] = r
    out = {}
    files = ShardFiles(max_open=4)
    try:
        for shard, wanted in by_shard.items():
            path = dataset / shard
            if not path.is_file():
                out.update({cid: f"shard {shard} missing" for cid in wanted})
                continue
            scan = scan_tar(path)
            for sample in scan.samples:
                r, m = wanted.get(sample.key), sample.members.get("mp4")
                if r is None or m is None:
                    continue
                try:
                    jpg = clip_thumbnail(files.pread(path, m.size, m.offset), r.get("num_frames"))
                    out[r["clip_id"]] = "data:image/jpeg;base64," + base64.b64encode(jpg).decode()
                except Exception as exc:  # one unreadable or undecodable clip costs one tile
                    out[r["clip_id"]] = f"decode failed: {type(exc).__name__}: {exc}"[:200]
            if scan.error:
                out.update({cid: f"shard {shard} unreadable: {scan.error}"[:200] for cid in wanted if cid not in out})
    finally:
        files.close()
    for r in clips:
        out.setdefault(r["clip_id"], f"not found in {_where(r)}")
    return out


# ---- HTML ---------------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
main{max-width:1240px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:22px;margin:4px 0 2px}
h2{font-size:18px;margin:30px 0 10px;border-bottom:1px solid #d8dde3;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 8px}
.muted{color:#66707a}.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{background:#fff;border:1px solid #dde2e7;border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:20px}.card span{color:#66707a;font-size:12px}
table{border-collapse:collapse;background:#fff;margin:6px 0}
td,th{border:1px solid #dde2e7;padding:3px 8px;text-align:left;vertical-align:top;font-size:13px}
th{background:#eef1f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.warn{background:#fff1e0;border:1px solid #e6a35a;color:#7a3b00;padding:8px 12px;border-radius:6px;margin:8px 0}
.ok{background:#e9f5ee;border:1px solid #8cc5a2;color:#1f5a36;padding:8px 12px;border-radius:6px;margin:8px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(384px,1fr));gap:10px}
.chart{background:#fff;border:1px solid #dde2e7;border-radius:6px}
.chart .t{font:600 12px system-ui,sans-serif;fill:#1d232a}.chart .s{font:10px system-ui,sans-serif;fill:#4d5660}
.chart .ax{stroke:#9aa3ad}.chart .thl{stroke:#c62828;stroke-width:1.5;stroke-dasharray:4 3}
.chart .th{font:600 10px system-ui,sans-serif;fill:#c62828}
.legend i{display:inline-block;width:11px;height:11px;margin:0 4px 0 12px;vertical-align:-1px}
.sheet{display:grid;grid-template-columns:repeat(auto-fill,minmax(236px,1fr));gap:8px}
.tile{background:#fff;border:1px solid #dde2e7;border-radius:5px;padding:4px;font-size:11px;overflow:hidden}
.tile img{display:block;width:227px;height:84px;margin:0 auto}
.tile .id{font-family:ui-monospace,Menlo,monospace;font-size:10px;word-break:break-all;color:#4d5660}
.tile .why{color:#a14600}.tile .err{color:#c62828;padding:20px 4px}
details{margin:6px 0}summary{cursor:pointer;color:#2b5c8a}pre{background:#fff;border:1px solid #dde2e7;padding:8px;
overflow:auto;font-size:12px;max-height:480px}
"""

e = html.escape


def _table(header: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{e(str(c))}</td>'
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _inputs_html(videos: list[dict], summary: dict) -> str:
    if not videos:
        return '<p class="muted">no videos.parquet: inputs unknown.</p>'
    ok = [v for v in videos if v.get("status") == "ok"]
    failed = [v for v in videos if v.get("status") != "ok"]
    parts = [f"<p>{len(videos)} inputs: <b>{len(ok)}</b> ok, <b>{len(failed)}</b> failed.</p>"]
    no_clip = [v for v in ok if v.get("num_clips") == 0]
    groups = defaultdict(list)
    for v in failed:
        groups[str(v.get("reason") or "no reason")[:160]].append(Path(str(v.get("path"))).name)
    for v in no_clip:
        groups[f"ok but no clip: {v.get('reason') or 'no clip long enough'}"].append(Path(str(v.get("path"))).name)
    if groups:
        rows = [[len(names), reason, ", ".join(sorted(names))] for reason, names in
                sorted(groups.items(), key=lambda kv: -len(kv[1]))]
        parts.append("<h3>Failed / empty inputs by reason</h3>" + _table(["n", "reason", "files"], rows, {0}))
    rows = [[Path(str(v.get("path"))).name, v.get("status"), _fmt(float(v.get("duration_s") or 0)),
             f"{v.get('width')}×{v.get('height')}", _fmt(float(v.get("fps") or 0)), v.get("codec") or "",
             v.get("num_clips", ""), v.get("num_clips_ok", ""), str(v.get("reason") or "")[:120]]
            for v in videos[:1000]]
    parts.append(f"<details><summary>all {len(videos)} inputs{' (first 1000)' if len(videos) > 1000 else ''}"
                 "</summary>" + _table(["file", "status", "duration s", "size", "fps", "codec", "clips", "kept",
                                        "reason"], rows, {2, 4, 6, 7}) + "</details>")
    return "".join(parts)


def _funnel_html(f: dict) -> str:
    removed = sum(f["removed"].values())
    check = (f"planned {f['planned']} = kept {f['kept']} + removed {removed} + failed {f['failed']}")
    if f["adds_up"]:
        box = f'<div class="ok">✓ adds up: {e(check)}</div>'
    else:
        hint = ("<p>summary.json and clips.parquet are written together by the build and by "
                "<code>build --refilter</code>: a difference means one of them was edited or copied alone.</p>"
                if any(w.startswith("summary.json") for w in f["warnings"]) else "")
        box = ('<div class="warn"><b>⚠ the funnel does not add up</b><ul>'
               + "".join(f"<li>{e(w)}</li>" for w in f["warnings"]) + f"</ul>{hint}</div>")
    rows = [["planned", f["planned"]]] + [[f"removed by {k}", v] for k, v in f["removed"].items()]
    rows += [["failed" + (" (" + ", ".join(f"{k} {v}" for k, v in f["failed_by_stage"].items()) + ")"
                          if f["failed_by_stage"] else ""), f["failed"]], ["kept", f["kept"]]]
    return box + svg_funnel(f) + _table(["step", "clips"], rows, {1})


def _duration(r: dict) -> float:
    if r.get("duration_s") is not None:
        return float(r["duration_s"])
    return float(r.get("end_s") or 0) - float(r.get("start_s") or 0)  # spans dropped before transcoding


def _contact_html(dataset: Path, clips: list[dict], per_group: int) -> tuple[str, dict]:
    groups = contact_groups(clips, per_group)
    if not groups:
        return '<p class="muted">no clips.</p>', {}
    thumbs = thumbnails(dataset, [r for g in groups for r in g.shown])
    parts, record = [], {}
    for g in groups:
        record[g.title] = [r["clip_id"] for r in g.shown]
        n_media = g.total - g.n_no_media
        note = f"{g.total} clip" + ("s" if g.total != 1 else "")
        if g.shown:
            note += f"; thumbnails of {len(g.shown)} of {n_media}"
        tiles = []
        for r in g.shown:
            src = thumbs.get(r["clip_id"], "")
            img = (f'<img src="{src}" alt="{e(r["clip_id"])}">' if src.startswith("data:")
                   else f'<div class="err">{e(src)}</div>')
            why = f'<div class="why">{e(str(r.get("reason") or ""))}</div>' if r.get("status") != "ok" else ""
            tiles.append(f'<div class="tile" title="{e(str(r.get("video_path")))}">{img}'
                         f'<div class="id">{e(r["clip_id"])}</div>'
                         f'<div>{_fmt(_duration(r))} s · {r.get("width")}×{r.get("height")} · '
                         f'{e(Path(str(r.get("video_path"))).name)}</div>{why}</div>')
        parts.append(f'<h3>{e(g.title)} <span class="muted">— {note}</span></h3>')
        if tiles:
            parts.append(f'<div class="sheet">{"".join(tiles)}</div>')
        if g.no_media:
            rows = [[r.get("clip_id") or "?", Path(str(r.get("video_path"))).name,
                     f'{_fmt(float(r.get("start_s") or 0))}–{_fmt(float(r.get("end_s") or 0))}', _fmt(_duration(r)),
                     str(r.get("reason") or "")[:200]] for r in g.no_media]
            listed = f"; {len(g.no_media)} listed" if len(g.no_media) < g.n_no_media else ""
            parts.append(f'<p class="muted">{g.n_no_media} without media in the shards (dropped before '
                         f'transcoding, or failed){listed}</p>')
            parts.append(_table(["clip", "file", "span s", "duration s", "reason"], rows, {3}))
    return "".join(parts), record


def _config_html(config: dict, sections: dict, bounds: list[Bound]) -> str:
    if not config:
        return '<p class="muted">no config.yaml: thresholds are not drawn.</p>'
    filters = ((config.get("curate") or {}).get("filters") or {})
    rows = []
    for name in FILTER_ORDER:
        if name not in filters:
            continue
        mine = [b for b in bounds if b.section == name]
        text = ", ".join(f"{b.key}={_fmt(b.value)} → {b.column}" for b in mine) or "—"
        rows.append([name, "on" if name in sections else "off", text])
    tr = (config.get("curate") or {}).get("transcode") or {}
    sp = (config.get("curate") or {}).get("split") or {}
    facts = (f"transcode: max_side {tr.get('max_side')}, max_fps {tr.get('max_fps')}, crf {tr.get('crf')} · "
             f"split: clips {sp.get('min_seconds')}–{sp.get('max_seconds')} s · "
             f"shards: target {((config.get('shards') or {}).get('target_bytes') or 0) / 1e6:g} MB")
    return (f"<p>{e(facts)}</p>" + _table(["filter", "", "thresholds (config key → score column)"], rows)
            + "<details><summary>config.yaml</summary><pre>" + e(yaml.safe_dump(config, sort_keys=False))
            + "</pre></details>")


def write_report(dataset_dir: str | Path, out_path: str | Path | None = None, per_group: int = 24) -> Path:
    """Write the HTML report (default ``DATASET/report.html``) and ``report.json`` beside it; return the HTML path."""
    if per_group < 0:
        raise ValueError(f"per_group must be >= 0, got {per_group}")
    dataset = Path(dataset_dir)
    if not dataset.is_dir():
        raise FileNotFoundError(f"dataset directory {dataset} does not exist")
    out = Path(out_path) if out_path else dataset / "report.html"
    notes: list[str] = []
    clips, clip_schema = _read_rows(dataset / "clips.parquet", notes, CLIP_COLUMNS)
    videos, _ = _read_rows(dataset / "videos.parquet", notes, VIDEO_COLUMNS)
    summary = _read_json(dataset / "summary.json", notes)
    config = {}
    if (dataset / "config.yaml").is_file():
        try:
            config = yaml.safe_load((dataset / "config.yaml").read_text()) or {}
        except yaml.YAMLError as exc:
            notes.append(f"config.yaml unreadable: {exc}")
    else:
        notes.append("no config.yaml")
    for name, value in (("summary.json", summary), ("config.yaml", config)):
        if not isinstance(value, dict):
            notes.append(f"{name} is not a mapping: ignored")
    summary = summary if isinstance(summary, dict) else {}
    for name, why in (summary.get("skipped_stages") or {}).items():
        notes.append(f"stage {name} is enabled but did not run: {why}")
    config = config if isinstance(config, dict) else {}
    sections = filter_sections(config, notes)
    bounds = [b for name, s in sections.items() for b in section_bounds(name, s)]

    f = funnel_numbers(clips, videos, summary)
    numeric = numeric_columns(clip_schema)
    hists = {}
    for col in [c for c in SCORE_COLUMNS if c in numeric]:
        h = histogram(clips, col, [b for b in bounds if b.column == col])
        if h:
            hists[col] = h
    dists = {col: histogram(clips, col, [b for b in bounds if b.column == col])
             for col in ("duration_s", "fps") if col in numeric}
    dists = {k: v for k, v in dists.items() if v}
    res = Counter(f"{r.get('width')}×{r.get('height')}" for r in clips
                  if r.get("status") in ("ok", "filtered") and r.get("width"))
    contact, contact_record = _contact_html(dataset, clips, per_group)

    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    cards = [("inputs", summary.get("inputs", len(videos))), ("clips planned", f["planned"]), ("kept", f["kept"]),
             ("kept %", f"{100 * f['kept'] / f['planned']:.0f}%" if f["planned"] else "—"),
             ("shards", summary.get("shards", "—")), ("shard MB", _fmt((summary.get("shard_bytes") or 0) / 1e6)),
             ("source min", _fmt((summary.get("source_seconds") or 0) / 60)),
             ("build wall s", summary.get("wall_s", "—"))]
    legend = (f'<p class="legend"><i style="background:{KEPT}"></i>kept<i style="background:{REMOVED}"></i>removed '
              '(by any filter)<i style="background:#c62828;height:2px"></i>config threshold</p>')
    score_svgs = "".join(svg_histogram(h, col) for col, h in hists.items())
    missing = [c for c in SCORE_COLUMNS if c not in hists]
    dist_svgs = "".join(svg_histogram(h, {"duration_s": "duration (s)", "fps": "frame rate"}[c])
                        for c, h in dists.items())
    if res:
        dist_svgs += svg_bars(res.most_common(12), f"resolution (top {min(12, len(res))} of {len(res)})")
    body = [
        f"<h1>reelforge dataset report</h1><div class='mono'>{e(str(dataset.resolve()))}</div>",
        f"<div class='muted'>generated {now}</div>",
        "".join(f"<div class='warn'>{e(n)}</div>" for n in notes),
        "<div class='cards'>" + "".join(f"<div class='card'><b>{e(str(v))}</b><span>{e(k)}</span></div>"
                                        for k, v in cards) + "</div>",
        "<h2>Configuration</h2>", _config_html(config, sections, bounds),
        "<h2>Inputs</h2>", _inputs_html(videos, summary),
        "<h2>Funnel</h2>", _funnel_html(f),
        "<h2>Scores</h2>", legend,
        f"<div class='grid'>{score_svgs}</div>" if score_svgs else "<p class='muted'>no score columns.</p>",
        f"<p class='muted'>not in this dataset (or never scored): {e(', '.join(missing))}</p>" if missing else "",
        "<h2>Duration, frame rate, resolution</h2>",
        f"<div class='grid'>{dist_svgs}</div>" if dist_svgs else "<p class='muted'>no clips.</p>",
        "<h2>Contact sheet</h2><p class='muted'>first and middle frame of each clip, decoded from the shards</p>",
        contact,
    ]
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>reelforge report — "
            f"{e(dataset.name)}</title><style>{CSS}</style></head><body><main>{''.join(body)}</main></body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    record = {"dataset": str(dataset.resolve()), "generated": now, "notes": notes, "summary": summary,
              "funnel": f, "thresholds": [dataclasses.asdict(b) for b in bounds], "scores": hists,
              "distributions": {**dists, "resolution": dict(res.most_common())},
              "inputs": {"total": len(videos), "ok": sum(v.get("status") == "ok" for v in videos),
                         "failed": {str(v.get("path")): v.get("reason") for v in videos if v.get("status") != "ok"}},
              "contact_sheet": contact_record}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str))
    return out


# ---- CLI ------------------------------------------------------------------------------------------------

from reelforge.curate.report_cli import add_parser  # noqa: E402,F401  (the parser lives apart: light to import)


def run(args) -> int:
    path = write_report(args.dataset, args.out, per_group=args.per_group)
    print(f"report written to {path} (numbers in {path.with_suffix('.json')})")
    return 0
