"""The report page: ``write_report`` reads a build (``numbers``), draws its charts (``plots``), picks and
decodes the contact sheet (``contact``), and writes one self-contained HTML file with ``report.json``."""
from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
from collections import Counter, defaultdict
from pathlib import Path

import yaml

from reelforge import storage
from reelforge.curate.filters import FILTER_ORDER
from reelforge.curate.report.contact import contact_groups, thumbnails
from reelforge.curate.report.numbers import (CLIP_COLUMNS, SCORE_COLUMNS, VIDEO_COLUMNS, Bound, read_json,
                                             read_rows, filter_sections, funnel_numbers, histogram,
                                             numeric_columns, section_bounds)
from reelforge.curate.report.plots import KEPT, REMOVED, fmt, svg_bars, svg_funnel, svg_histogram

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
    rows = [[Path(str(v.get("path"))).name, v.get("status"), fmt(float(v.get("duration_s") or 0)),
             f"{v.get('width')}×{v.get('height')}", fmt(float(v.get("fps") or 0)), v.get("codec") or "",
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


def _contact_html(dataset: Path | str, clips: list[dict], per_group: int) -> tuple[str, dict]:
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
                         f'<div>{fmt(_duration(r))} s · {r.get("width")}×{r.get("height")} · '
                         f'{e(Path(str(r.get("video_path"))).name)}</div>{why}</div>')
        parts.append(f'<h3>{e(g.title)} <span class="muted">— {note}</span></h3>')
        if tiles:
            parts.append(f'<div class="sheet">{"".join(tiles)}</div>')
        if g.no_media:
            rows = [[r.get("clip_id") or "?", Path(str(r.get("video_path"))).name,
                     f'{fmt(float(r.get("start_s") or 0))}–{fmt(float(r.get("end_s") or 0))}', fmt(_duration(r)),
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
        text = ", ".join(f"{b.key}={fmt(b.value)} → {b.column}" for b in mine) or "—"
        rows.append([name, "on" if name in sections else "off", text])
    tr = (config.get("curate") or {}).get("transcode") or {}
    sp = (config.get("curate") or {}).get("split") or {}
    facts = (f"transcode: max_side {tr.get('max_side')}, max_fps {tr.get('max_fps')}, crf {tr.get('crf')} · "
             f"split: clips {sp.get('min_seconds')}–{sp.get('max_seconds')} s · "
             f"shards: target {((config.get('shards') or {}).get('target_bytes') or 0) / 1e6:g} MB")
    return (f"<p>{e(facts)}</p>" + _table(["filter", "", "thresholds (config key → score column)"], rows)
            + "<details><summary>config.yaml</summary><pre>" + e(yaml.safe_dump(config, sort_keys=False))
            + "</pre></details>")


def _links_html(links: dict) -> str:
    """Pages that later steps made from this dataset, listed in ``DATASET/links.json`` as
    ``{"pages": [{"title": ..., "href": ... (relative to the dataset folder), "note": ...}]}`` — e.g. the
    demo's generated videos (train/dit/demo.py writes it). Empty when there is none."""
    pages = [p for p in (links.get("pages") or []) if isinstance(p, dict) and p.get("href")]
    if not pages:
        return ""
    items = "".join(f"<li><a href='{e(str(p['href']))}'>{e(str(p.get('title') or p['href']))}</a>"
                    f"{' — ' + e(str(p['note'])) if p.get('note') else ''}</li>" for p in pages)
    return f"<h2>Made from this dataset</h2><ul>{items}</ul>"


def _json_beside(html_path: Path | str) -> Path | str:
    if isinstance(html_path, Path):
        return html_path.with_suffix(".json")
    stem, dot, ext = html_path.rpartition(".")
    return f"{stem}.json" if dot and "/" not in ext else f"{html_path}.json"


def write_report(dataset_dir: str | Path, out_path: str | Path | None = None, per_group: int = 24) -> Path | str:
    """Write the HTML report (default ``DATASET/report.html``) and ``report.json`` beside it; return the HTML
    path (a ``Path``, or the URL string when it is on object storage).

    ``dataset_dir`` and ``out_path`` may each be a local path or an fsspec URL (``s3://…``): the tables are
    read through ``reelforge.storage``, the page is made in memory and each file is written in one atomic
    step (local: tmp + rename; object storage: one PUT), so a reader never sees half a page."""
    if per_group < 0:
        raise ValueError(f"per_group must be >= 0, got {per_group}")
    dataset = storage.as_path_or_url(dataset_dir)
    storage.check_input_url(dataset_dir)  # a bucket without credentials: one line, not the SDK's traceback
    storage.check_output_url(out_path or dataset_dir)
    if not storage.isdir(dataset):
        raise FileNotFoundError(f"dataset directory {dataset} does not exist")
    out = storage.as_path_or_url(out_path) if out_path else storage.join(dataset, "report.html")
    where = str(dataset.resolve()) if isinstance(dataset, Path) else str(dataset).rstrip("/")
    notes: list[str] = []
    clips, clip_schema = read_rows(storage.join(dataset, "clips.parquet"), notes, CLIP_COLUMNS)
    videos, _ = read_rows(storage.join(dataset, "videos.parquet"), notes, VIDEO_COLUMNS)
    summary = read_json(storage.join(dataset, "summary.json"), notes)
    links = read_json(storage.join(dataset, "links.json"), notes)
    config = {}
    if storage.exists(storage.join(dataset, "config.yaml")):
        try:
            config = yaml.safe_load(storage.read_bytes(storage.join(dataset, "config.yaml")).decode()) or {}
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
             ("shards", summary.get("shards", "—")), ("shard MB", fmt((summary.get("shard_bytes") or 0) / 1e6)),
             ("source min", fmt((summary.get("source_seconds") or 0) / 60)),
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
        f"<h1>reelforge dataset report</h1><div class='mono'>{e(where)}</div>",
        f"<div class='muted'>generated {now}</div>",
        "".join(f"<div class='warn'>{e(n)}</div>" for n in notes),
        "<div class='cards'>" + "".join(f"<div class='card'><b>{e(str(v))}</b><span>{e(k)}</span></div>"
                                        for k, v in cards) + "</div>",
        _links_html(links if isinstance(links, dict) else {}),
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
            f"{e(storage.basename(where))}</title><style>{CSS}</style></head><body><main>{''.join(body)}</main></body></html>")
    storage.write_bytes_atomic(out, page.encode("utf-8"))
    record = {"dataset": where, "generated": now, "notes": notes, "summary": summary,
              "funnel": f, "thresholds": [dataclasses.asdict(b) for b in bounds], "scores": hists,
              "distributions": {**dists, "resolution": dict(res.most_common())},
              "inputs": {"total": len(videos), "ok": sum(v.get("status") == "ok" for v in videos),
                         "failed": {str(v.get("path")): v.get("reason") for v in videos if v.get("status") != "ok"}},
              "contact_sheet": contact_record}
    storage.write_bytes_atomic(_json_beside(out), json.dumps(record, indent=2, default=str).encode())
    return out


def run(args) -> int:
    """The command. Unlike ``write_report`` (which reports on whatever tables it finds), a folder holding none
    of a build's tables is refused: a mistyped path made an empty report and said it had."""
    storage.check_input_url(args.dataset)
    if storage.isdir(args.dataset) and not any(storage.exists(storage.join(args.dataset, n))
                                               for n in ("clips.parquet", "videos.parquet", "summary.json")):
        raise FileNotFoundError(f"{args.dataset} is not a build output (no clips.parquet, videos.parquet or "
                                f"summary.json): run `reelforge build … --output {args.dataset}` first")
    path = write_report(args.dataset, args.out, per_group=args.per_group)
    print(f"report written to {path} (numbers in {_json_beside(path)})")
    return 0
