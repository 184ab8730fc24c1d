"""The report's charts: inline SVG drawn from ``numbers``' data (no JavaScript, no plotting library)."""
from __future__ import annotations

import html
import math

import numpy as np

KEPT, REMOVED = "#3f8f5f", "#e08a4f"  # bar colours: kept clips, clips some filter removed


def fmt(v: float) -> str:
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
        label = fmt(10 ** t) if h["log"] else fmt(float(t))
        anchor = ("start", "middle", "middle", "middle", "end")[i]  # end labels stay inside the box
        out.append(f'<text x="{x(t):.1f}" y="{top + ph + 14}" class="s" text-anchor="{anchor}">{label}</text>')
    if h["min"] == h["max"]:
        out.append(f'<text x="{width - right}" y="{top + 12}" class="s" text-anchor="end">'
                   f'all = {fmt(h["min"])}</text>')
    for b in h["thresholds"]:
        v = math.log10(b["value"]) if h["log"] and b["value"] > 0 else (None if h["log"] else b["value"])
        label = f'{b["kind"]} {fmt(b["value"])}'
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
