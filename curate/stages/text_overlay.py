"""Text overlays: burnt-in subtitles, captions, title cards, watermarks with lettering.

A learned text detector (PaddleOCR's PP-OCRv4 DB-net, ``curate/text_detector.py``) finds text boxes on
``frames_per_clip`` evenly spaced frames inside the borders stage's crop box; all frames of a batch of
clips go through the network together. A box counts as text only when PP-OCRv4's recogniser can
read it (or, when ``sure_box_thresh`` < 1, when the detector scores it that high): the detector's score
alone calls rocks in snow text. The reader sees only the boxes, not the frames, so text-free clips
cost almost nothing more. Score columns, all fractions of the (cropped) frame:

- ``text_area``: union of the boxes in a frame, averaged over the scored frames (subtitles that come
  and go count by how much of the clip they cover);
- ``text_boxes``: the most boxes (text lines) found in one frame;
- ``text_box_max``: the largest single box in any frame (one big title word);
- ``text_area_all``: ``text_area`` before the persistence rule below (every read box), for inspection;
  no threshold reads it.

Persistence: text that matters for a training clip (subtitles, titles, captions, watermarks, burnt-in
UI) stays on screen for a second or more; texture misread as text flickers. So a box counts only where
read text is found at the same place (``same_place``) in at least ``persist_frames`` frames of the
clip. The 4 scored frames of the K = 8 sampled are 1.1-1.7 s apart in a 4-s clip (2.9-4.3 s in a 10-s
one), too far to see a 1-s subtitle twice, so a place seen in too few scored frames is looked for in
the sampled frames next to them (0.57 s apart in a 4-s clip): those extra frames go through the network
only for such clips, which are few (a text-free clip mostly has no box at all). Why: one DB-net box in
the first frame of a 320x180 Sintel shot of city ruins, read as "MM" at 0.55, dropped the clip
(``text_area`` 0.023); no other frame of the shot has a box, and none has text (BENCHMARKS.md).

The network is the stage's cost (~50 ms a 256x448 frame; reading the few boxes found is small), so
``screen: true`` runs it on every other scored frame first (the 1st and 3rd of 4) and on the others only
in clips where those have a candidate box. On held-out footage that cut the stage from 0.30 to 0.19 CPU
s a clip with the labelled set unchanged, but text seen only between the screen frames is not looked for:
one 1-s subtitle of 12 held-out ones was no longer dropped. So it is off by default (BENCHMARKS.md, issue
12). A low-resolution screen over all 4 frames was measured and rejected: at a 192-px short side it
already misses the Sintel title cards.

Why not the hand-written stroke detector this stage used before (``curate/text_classic.py``): dense
man-made texture (city aerials, shelves, machinery) reads as text to it, and it dropped good footage
(issue 11). ``prepass`` runs it first, as a cheap gate in front of the model: a clip where it flags no
pixel in any scored frame skips the network and scores 0. It is off by default: on the labelled set it
let 19 of 42 clips skip the model (~40% of the CPU), but 3 of them had text it cannot see (big bold
lettering, whose strokes are wider than its kernel; text running sideways), and recall fell from 1.00
to 0.82 (BENCHMARKS.md).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from reelforge.curate.stage import Batch, Resources, Stage, batch_len, error_reason, row_at, rows_to_batch
from reelforge.curate.stages.common import as_frames, bound_reason, crop_in_frames, first_reason

SCORES = ("text_area", "text_boxes", "text_box_max", "text_area_all")
# two boxes are at the same place when their overlap covers this share of the smaller one (a word
# of a line matches the line; a subtitle whose wording changes keeps its place)
SAME_PLACE = 0.5


@dataclass
class TextOverlayConfig:
    enabled: bool = True
    # mean share of the frame covered by text boxes; one line of subtitles at the bottom is ~0.02-0.06,
    # a small title card's line ~0.015; a one- or two-word corner watermark (0.002-0.009) passes
    max_text_area: float = 0.01
    max_text_boxes: int = 0        # most text lines in one frame; 0 = no limit
    max_text_box: float = 1.0      # largest single box share; 1 = no limit
    frames_per_clip: int = 4       # evenly spaced among the K sampled frames
    # network input short side (x32); cost grows with its square. 320 found "text" in snow and ruins
    short_side: int = 256
    # mean text probability inside a box to keep it as a candidate (rapidocr's DB default)
    box_thresh: float = 0.5
    # candidates scoring under sure_box_thresh count only when PP-OCRv4's recogniser reads them with
    # confidence >= min_read_score (PaddleOCR's drop_score). The box score cannot tell text from texture:
    # dark rocks in a snowy Sintel shot and a subtitle over a checkerboard both score 0.59 (the reader:
    # 0.16 and 0.99), and a re-encoded snow shot gave a 0.67 box over 10% of the frame (read: 0.13).
    # 1 = read every box; <= box_thresh = read none (the recogniser is not loaded)
    sure_box_thresh: float = 1.0
    min_read_score: float = 0.5
    max_read_ratio: float = 10.0   # read at most this many box heights of a line, around its centre
    min_aspect: float = 1.5        # long/short side of a box to count as a line of text
    # frames (of the K sampled) in which read text must be found at the same place for its boxes to count:
    # overlays persist, misread texture flickers (see the module docstring). 1 = any single read box
    # counts (the rule before); a clip with fewer sampled frames needs text in all of them
    persist_frames: int = 2
    # detect every other scored frame first (the 1st and 3rd of 4) and the others only in clips where
    # those have a candidate box: most clips have none, and the network is the stage's cost. Off: text
    # seen only between the screen frames is lost (a 1-s subtitle: 1 of 12 held-out drops; BENCHMARKS.md)
    screen: bool = False
    prepass: bool = False          # hand-written detector as a gate: no stroke found -> skip the model
    model_path: str = ""           # empty: the PP-OCRv4 det file inside the rapidocr-onnxruntime wheel
    rec_model_path: str = ""       # empty: the PP-OCRv4 rec file inside the same wheel
    device: str = "auto"           # auto | cpu | cuda (onnxruntime provider)
    threads: int = 1               # onnxruntime intra-op threads per actor
    concurrency: int = 1
    num_cpus: float = 0.5          # a scheduling label, below 1 so model actors leave room for decoding
    num_gpus: float = 0.0          # GPUs Ray reserves per actor; device auto uses it (decided on the worker)
    batch_size: int = 16

    def __post_init__(self):
        for name in ("max_text_area", "max_text_box", "box_thresh", "sure_box_thresh", "min_read_score"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"text_overlay: {name} must be in [0, 1], got {getattr(self, name)}")
        if self.max_read_ratio < 1.0:
            raise ValueError(f"text_overlay: max_read_ratio must be >= 1, got {self.max_read_ratio}")
        if self.max_text_boxes < 0:
            raise ValueError(f"text_overlay: max_text_boxes must be >= 0, got {self.max_text_boxes}")
        if self.short_side < 32 or self.short_side % 32:
            raise ValueError(f"text_overlay: short_side must be a multiple of 32, got {self.short_side}")
        if self.min_aspect < 1.0:
            raise ValueError(f"text_overlay: min_aspect must be >= 1, got {self.min_aspect}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"text_overlay: device must be auto, cpu or cuda, got {self.device!r}")
        if min(self.frames_per_clip, self.persist_frames, self.threads, self.concurrency, self.batch_size) < 1:
            raise ValueError("text_overlay: frames_per_clip, persist_frames, threads, concurrency and "
                             "batch_size must be >= 1")
        if self.num_gpus < 0:
            raise ValueError(f"text_overlay: num_gpus must be >= 0, got {self.num_gpus}")

    def check(self, row: dict) -> str | None:
        return first_reason(
            bound_reason("text_overlay", "text_area", row.get("text_area"), hi=self.max_text_area),
            bound_reason("text_overlay", "text_boxes", row.get("text_boxes"),
                         hi=self.max_text_boxes if self.max_text_boxes > 0 else None),
            bound_reason("text_overlay", "text_box_max", row.get("text_box_max"),
                         hi=self.max_text_box if self.max_text_box < 1.0 else None))


def clip_scores(per_frame: list, unsteady: list | None = None) -> dict:
    """Per-frame FrameText of one clip -> its score columns; ``unsteady``: the same frames before the
    persistence rule (for ``text_area_all``; None: the same as ``per_frame``)."""
    return {"text_area": float(np.mean([f.area for f in per_frame])),
            "text_boxes": int(max(len(f.boxes) for f in per_frame)),
            "text_box_max": float(max(f.largest for f in per_frame)),
            "text_area_all": float(np.mean([f.area for f in (unsteady or per_frame)]))}


def picked(k: int, n: int) -> np.ndarray:
    """Indices of the ``n`` evenly spaced frames scored among ``k`` sampled ones (nsfw's pick_frames)."""
    return np.unique(np.linspace(0, k - 1, min(n, k)).round().astype(int))


def same_place(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, 4, 2) and (m, 4, 2) boxes -> (n, m) bool: they overlap by ``SAME_PLACE`` of the smaller one's
    area (axis-aligned bounds)."""
    lo_a, hi_a, lo_b, hi_b = a.min(1), a.max(1), b.min(1), b.max(1)                     # (n, 2), (m, 2)
    side = np.minimum(hi_a[:, None], hi_b[None]) - np.maximum(lo_a[:, None], lo_b[None])  # (n, m, 2)
    inter = np.clip(side, 0, None).prod(2)                                               # (n, m)
    smaller = np.minimum((hi_a - lo_a).prod(1)[:, None], (hi_b - lo_b).prod(1)[None])    # (n, m)
    return (smaller > 0) & (inter >= SAME_PLACE * smaller)


def places(boxes: list[np.ndarray]) -> list[np.ndarray]:
    """Per frame (n_f, 4, 2) boxes -> per frame (n_f,) how many frames have a box at that box's place.

    A place is a connected group of boxes linked by ``same_place`` across frames (a subtitle whose line
    changes length stays one place through the frames where the lines overlap)."""
    frame = np.concatenate([np.full(len(b), f) for f, b in enumerate(boxes)] + [np.zeros(0, int)])
    if len(frame) == 0:
        return [np.zeros(0, int) for _ in boxes]
    flat = np.concatenate([b.reshape(-1, 4, 2) for b in boxes])                          # (N, 4, 2)
    linked = same_place(flat, flat) | np.eye(len(flat), dtype=bool)                      # (N, N)
    group = np.arange(len(flat))
    while True:  # every box takes the smallest group id linked to it, until none changes
        new = np.where(linked, group[None], len(flat)).min(1)                            # (N,)
        if (new == group).all():
            break
        group = new
    frames_in = {g: len(set(frame[group == g].tolist())) for g in set(group.tolist())}
    counts = np.array([frames_in[g] for g in group.tolist()], int)
    return np.split(counts, np.cumsum([len(b) for b in boxes])[:-1])


def neighbours(pick: np.ndarray, k: int, frames: list[int]) -> list[int]:
    """The sampled frames (of ``k``) next to the scored frames ``pick[f]`` for f in ``frames``, not
    scored themselves."""
    near = {j for f in frames for j in (pick[f] - 1, pick[f] + 1) if 0 <= j < k}
    return sorted(near - set(pick.tolist()))


def persistent(found: list, extra: list, need: int, h: int, w: int) -> list:
    """FrameText of the scored (h, w) frames (``found``) with only the boxes whose place has read text in
    at least ``need`` frames, counting the scored frames and the ``extra`` (neighbour) frames' FrameText."""
    from reelforge.curate.text_detector import frame_text

    every = [f.boxes for f in found] + [f.boxes for f in extra]
    counts = places(every)[:len(found)]
    out = []
    for f, c in zip(found, counts):
        keep = c >= need
        out.append(f if keep.all() else frame_text(f.boxes[keep].reshape(-1, 4, 2), f.scores[keep], h, w))
    return out


class TextOverlayStage(Stage):
    name = "text_overlay"
    inputs = ("frames",)
    outputs = SCORES
    acts_on = ("ok", "filtered")

    def __init__(self, cfg: TextOverlayConfig | None = None):
        from reelforge.curate.text_detector import TextDetector

        self.cfg = cfg or TextOverlayConfig()
        self.detector = TextDetector(self.cfg.model_path, short_side=self.cfg.short_side,
                                     box_thresh=self.cfg.box_thresh, sure_box_thresh=self.cfg.sure_box_thresh,
                                     min_read_score=self.cfg.min_read_score, max_read_ratio=self.cfg.max_read_ratio,
                                     rec_model_path=self.cfg.rec_model_path, min_aspect=self.cfg.min_aspect,
                                     max_batch=self.cfg.batch_size, threads=self.cfg.threads,
                                     device=self.cfg.device)
        self.skipped = 0  # clips the prepass let skip the model (the bench reads it)
        self.extra_frames = 0  # neighbour frames detected to check persistence (the bench reads it)
        self.screened = 0  # clips whose other scored frames the screen let skip (the bench reads it)

    @classmethod
    def resources(cls, cfg: TextOverlayConfig | None = None) -> Resources:
        cfg = cfg or TextOverlayConfig()
        gpus = max(cfg.num_gpus, 1.0) if cfg.device == "cuda" else cfg.num_gpus
        return Resources(num_cpus=cfg.num_cpus, num_gpus=gpus, batch_size=cfg.batch_size,
                         concurrency=cfg.concurrency)

    def __call__(self, batch: Batch) -> Batch:
        rows = [row_at(batch, i) for i in range(batch_len(batch))]
        todo: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # row -> its K cropped frames, the scored indices
        for i, row in enumerate(rows):
            row.update({k: None for k in SCORES})
            if row.get("status", "ok") not in self.acts_on:
                continue
            try:
                frames = as_frames(row.get("frames"))
                x0, y0, x1, y1 = crop_in_frames(row, frames)
                frames, pick = frames[:, y0:y1, x0:x1], picked(len(frames), self.cfg.frames_per_clip)
                if self.cfg.prepass and not _strokes_found(frames[pick]):
                    row.update(text_area=0.0, text_boxes=0, text_box_max=0.0, text_area_all=0.0)
                    self.skipped += 1
                    continue
                todo[i] = frames, pick
            except Exception as exc:
                row.update(status="failed", reason=error_reason(self.name, exc, self.on_error))
        try:
            for i, scores in self._score(todo).items():
                rows[i].update(scores)
        except Exception:  # find the row that breaks it; the others still get scored
            for i, job in todo.items():
                try:
                    rows[i].update(self._score({i: job})[i])
                except Exception as exc:
                    rows[i].update(status="failed", reason=error_reason(self.name, exc, self.on_error))
        return rows_to_batch(rows, like=batch)

    def _score(self, todo: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict[int, dict]:
        """Rows' (K frames, scored indices) -> their score columns: the scored frames of all rows through
        the detector together, then the neighbour frames of places seen too rarely, together."""
        found = self._scored(todo)
        more: dict[int, list[int]] = {}  # row -> neighbour frames to look at
        for i, (frames, pick) in todo.items():
            need = min(self.cfg.persist_frames, len(frames))
            rare = [f for f, c in enumerate(places([t.boxes for t in found[i]])) if (c < need).any()]
            if rare:
                more[i] = neighbours(pick, len(frames), rare)
        extra = self._detect({i: np.array(js, int) for i, js in more.items() if js}, todo)
        self.extra_frames += sum(len(js) for js in more.values())
        out = {}
        for i, (frames, _) in todo.items():
            kept = persistent(found[i], extra.get(i, []), min(self.cfg.persist_frames, len(frames)),
                              *frames.shape[1:3])
            out[i] = clip_scores(kept, found[i])
        return out

    def _scored(self, todo: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict[int, list]:
        """Each row's FrameText on its scored frames. With ``screen``, every other scored frame (the 1st
        and 3rd of 4) goes through the network first, and the rest only for rows with a candidate box in
        one of those; a row without one scores its other frames as text-free (``screened`` counts them)."""
        from reelforge.curate.text_detector import frame_text

        picks = {i: pick for i, (_, pick) in todo.items()}
        if not self.cfg.screen:
            return self._detect(picks, todo)
        first = self._candidates({i: pick[::2] for i, pick in picks.items()}, todo)
        go = [i for i in picks if any(len(boxes) for boxes, _ in first[i])]
        rest = self._candidates({i: picks[i][1::2] for i in go if len(picks[i]) > 1}, todo)
        cands = {}
        for i in go:  # every scored frame's candidates, in pick order: read together, as without screening
            c: list = [None] * len(picks[i])
            c[::2], c[1::2] = first[i], rest.get(i, [])
            cands[i] = c
        out = self._confirmed({i: picks[i] for i in go}, cands, todo)
        for i in picks.keys() - set(go):
            h, w = todo[i][0].shape[1:3]
            out[i] = [frame_text(np.zeros((0, 4, 2), np.float32), np.zeros(0, np.float32), h, w)] * len(picks[i])
        self.screened += len(picks) - len(go)
        return out

    def _detect(self, which: dict[int, np.ndarray], todo: dict) -> dict[int, list]:
        """{row: frame indices} -> {row: FrameText per frame}: network and reading on one gathering of the
        frames (``_candidates`` and ``_confirmed`` are the screen's two halves of it)."""
        return _per_size(which, todo, lambda frames, clips: self.detector.detect(frames, clips=clips))

    def _candidates(self, which: dict[int, np.ndarray], todo: dict) -> dict[int, list]:
        """{row: frame indices} -> {row: (boxes, scores) per frame, before reading}."""
        return _per_size(which, todo, lambda frames, clips: self.detector.candidates(frames))

    def _confirmed(self, which: dict[int, np.ndarray], cands: dict[int, list], todo: dict) -> dict[int, list]:
        """{row: frame indices}, their candidates -> {row: FrameText per frame}: the boxes of all rows of
        one frame size read together (a box at the place of one read in the same clip takes its verdict)."""
        return _per_size(which, todo, lambda frames, clips: self.detector.confirm(
            frames, [c for i in dict.fromkeys(clips) for c in cands[i]], clips=clips))


def _per_size(which: dict[int, np.ndarray], todo: dict, call) -> dict[int, list]:
    """``call(frames, clips)`` once per frame size (clips of one source share it: one network call, not one
    per clip) on the ``which`` frames of those rows, ``clips`` naming each frame's row -> {row: its results}."""
    out = {}
    for idx in _by_size(which, todo):
        frames = np.concatenate([np.ascontiguousarray(todo[i][0][which[i]]) for i in idx])
        found = call(frames, [i for i in idx for _ in which[i]])
        bounds = np.cumsum([0] + [len(which[i]) for i in idx])
        out.update({i: found[bounds[j]:bounds[j + 1]] for j, i in enumerate(idx)})
    return out


def _by_size(which: dict[int, np.ndarray], todo: dict) -> list[list[int]]:
    """The rows of ``which`` grouped by their frames' size (rows with no frame to look at left out)."""
    by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, js in which.items():
        if len(js):
            by_size[todo[i][0].shape[1:3]].append(i)
    return list(by_size.values())


def _strokes_found(frames: np.ndarray) -> bool:
    """The hand-written detector flags at least one text-like pixel in one of ``frames``."""
    from reelforge.curate.text_classic import text_area

    return any(text_area(f[None], persist_frac=1.0) > 0 for f in frames)
