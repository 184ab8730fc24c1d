"""The labelled clip set of ``bench/data/filter_labels.yaml`` as scorer-ready rows.

A real entry becomes what the build's scorers see: the span decoded with the transcoder's own decoder
(upright, square pixels), K evenly spaced frames at a 256-px short side, then the borders stage's crop
box. A generated entry is rendered here (no codec): a reelforge.samples shot with its subtitle, or a
title card drawn over a samples background. Used by ``bench/bench_filters.py --only labelled``,
``bench/filter_holdout.py`` (which re-encodes the real spans) and the real-frame filter tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

LABELS = Path(__file__).resolve().parent / "data" / "filter_labels.yaml"
SHORT_SIDE = 256


@dataclass
class Entry:
    id: str
    text: bool
    unsafe: bool
    tags: list[str] = field(default_factory=list)
    path: str = ""                 # real: relative to ../shared
    start: float = 0.0
    end: float = 0.0
    spec: dict = field(default_factory=dict)  # generated: kind, background, motion, text, lines

    @property
    def real(self) -> bool:
        return bool(self.path)


def load_entries(path: Path = LABELS) -> list[Entry]:
    raw = yaml.safe_load(Path(path).read_text())
    out = [Entry(id=e["id"], text=bool(e["text"]), unsafe=bool(e["unsafe"]), tags=list(e.get("tags") or []),
                 path=e["path"], start=float(e["start"]), end=float(e["end"])) for e in raw["real"]]
    for e in raw["generated"]:
        out.append(Entry(id=e["id"], text=e["kind"] in ("subtitle", "title_card"), unsafe=False,
                         tags=[e["kind"]], spec=dict(e)))
    return out


def _row(entry: Entry, frames: list[np.ndarray], k: int) -> dict:
    idx = np.linspace(0, len(frames) - 1, min(k, len(frames))).round().astype(int)
    h, w = frames[0].shape[:2]
    s = min(1.0, SHORT_SIDE / min(h, w))
    small = np.stack([cv2.resize(frames[i], (max(2, round(w * s)), max(2, round(h * s))),
                                 interpolation=cv2.INTER_AREA) for i in idx])
    return {"clip_id": entry.id, "status": "ok", "reason": None, "width": w, "height": h, "frames": small}


def real_row(entry: Entry, shared: Path, k: int = 8) -> dict:
    return _row(entry, real_frames(entry, shared), k)


def real_frames(entry: Entry, shared: Path) -> list[np.ndarray]:
    """Every frame of a real entry's span at full size, upright, square pixels (RGB uint8), its colours
    read as a build's transcode reads them (``curate/colour.py``: untagged HD is BT.709, full range and HDR
    converted), not by PyAV's default (untagged = BT.601)."""
    from reelforge.curate.colour import ColourConverter, source_colour
    from reelforge.curate.stages.probe import Probe
    from reelforge.curate.stages.transcode import decode_span, upright

    path = str(shared / entry.path)
    probe = Probe().process_row({"path": path})
    rot, sar = int(probe.get("rotation") or 0), float(probe.get("sar") or 1.0)
    frames, conv = [], None
    for _, frame in decode_span(path, entry.start, entry.end, as_frames=True):
        conv = conv or ColourConverter(source_colour(frame))
        img = upright(conv.to_rgb(frame), rot)
        if abs(sar - 1.0) > 1e-3:
            img = cv2.resize(img, (round(img.shape[1] * sar), img.shape[0]), interpolation=cv2.INTER_AREA)
        frames.append(img)
    if not frames:
        raise ValueError(f"{entry.id}: no frames in {entry.start}-{entry.end} s of {path}")
    return frames


def generated_row(entry: Entry, k: int = 8, width: int = 480, height: int = 270) -> dict:
    from reelforge.samples import ShotSpec, VideoSpec, render_frames

    s = entry.spec
    title = s["kind"] == "title_card"
    shot = ShotSpec(48, s["background"], (70, 90, 120), None if title else "circle",
                    motion=s.get("motion", "static"), text=s.get("text"))
    frames = list(render_frames(VideoSpec(entry.id, [shot], width=width, height=height, fps=24.0, seed=1)))
    if title:
        for f in frames:
            _draw_title(f, s["lines"], s.get("scale", 1.0), s.get("outline", True))
    return _row(entry, frames, k)


def _draw_title(img: np.ndarray, lines: list[str], scale: float = 1.0, outline: bool = True) -> None:
    """Big centred lines, white (with a dark outline), as a chapter or date card; ``scale`` 3 makes
    letters a third of the frame tall with strokes far wider than the hand-written detector's kernel."""
    h, w = img.shape[:2]
    font, size, thick = cv2.FONT_HERSHEY_DUPLEX, scale * h / 200.0, max(2, int(scale * h / 120))
    y = h // 2 - (len(lines) - 1) * int(30 * size) // 2
    for line in lines:
        tw, th = cv2.getTextSize(line, font, size, thick)[0]
        org = ((w - tw) // 2, y + th // 2)
        if outline:
            cv2.putText(img, line, org, font, size, (0, 0, 0), thick + 3, cv2.LINE_AA)
        cv2.putText(img, line, org, font, size, (255, 255, 255), thick, cv2.LINE_AA)
        y += int(30 * size) + th


def rows(entries: list[Entry], shared: Path | None, k: int = 8, with_borders: bool = True) -> list[dict]:
    """Rows for ``entries`` (real ones need ``shared``), with the borders stage's crop box when asked."""
    out = [real_row(e, shared, k) if e.real else generated_row(e, k) for e in entries]
    if with_borders:
        from reelforge.curate.stage import REMOVED_EARLY, rows_to_batch
        from reelforge.curate.stages.borders import BordersStage

        batch = BordersStage()(rows_to_batch(out))
        # only its crop box: the set measures the text and nsfw filters on every clip, so none is marked
        # as removed by borders (which the model stages would then leave unscored)
        batch.pop(REMOVED_EARLY, None)
        out = [{key: batch[key][i] for key in batch} for i in range(len(out))]
    return out
