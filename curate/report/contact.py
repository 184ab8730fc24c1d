"""The contact sheet's content: which clips each group shows, and a JPEG of each read from the shards."""
from __future__ import annotations

import base64
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reelforge.curate.filters import FILTER_ORDER, filter_name


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


def thumbnails(dataset: Path | str, clips: list[dict]) -> dict[str, str]:
    """clip_id -> ``data:image/jpeg;base64,...`` or an error text. Each shard's headers are scanned once
    (work shards have no index) and the members read through ``shards.access`` like every other tool.
    On object storage (``dataset`` a URL) each shard that holds a shown clip is downloaded once into the
    temp dir (``storage.local_source``) and removed after its thumbnails are made."""
    from reelforge import storage
    from reelforge.shards.access import ShardFiles
    from reelforge.shards.tarscan import scan_tar

    by_shard = defaultdict(dict)
    for r in clips:
        by_shard[_where(r)][r["clip_id"]] = r
    out = {}
    files = ShardFiles(max_open=4)
    try:
        for shard, wanted in by_shard.items():
            url = storage.join(dataset, *shard.split("/"))
            if not storage.exists(url):
                out.update({cid: f"shard {shard} missing" for cid in wanted})
                continue
            with storage.local_source(url) as path:
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
                files.close()  # the downloaded copy goes when the with ends: no descriptor may outlive it
            if scan.error:
                out.update({cid: f"shard {shard} unreadable: {scan.error}"[:200] for cid in wanted if cid not in out})
    finally:
        files.close()
    for r in clips:
        out.setdefault(r["clip_id"], f"not found in {_where(r)}")
    return out

