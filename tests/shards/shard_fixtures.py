"""Tiny generated datasets: H.264 clips encoded with PyAV from numpy frames, written with ShardWriter.

A uniquely named module (not conftest) so `from shard_fixtures import ...` cannot pick up another folder's conftest."""
from __future__ import annotations

import io
import json
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from reelforge.shards.buckets import BucketConfig, BucketTable
from reelforge.shards.spec import CLIPS_FILE, FORMAT_ID, SHARDS_SUBDIR
from reelforge.shards.writer import ShardWriter, ShardWriterConfig


def make_frames(seed: int, n: int, w: int, h: int) -> np.ndarray:
    """(n, h, w, 3) uint8: a flat colour per clip plus a moving bright square, so clips differ."""
    rng = np.random.default_rng(seed)
    base = rng.integers(30, 200, size=3)
    frames = np.empty((n, h, w, 3), np.uint8)
    frames[:] = base
    for t in range(n):
        x = (t * 3) % max(1, w - 8)
        frames[t, 4:12, x:x + 8] = 255
    return frames


def encode_mp4(frames: np.ndarray, fps: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "8"}
        for f in frames:
            for pkt in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return buf.getvalue()


def encode_jpg(w: int, h: int, seed: int) -> bytes:
    img = make_frames(seed, 1, w, h)[0]
    ok, data = cv2.imencode(".jpg", img[:, :, ::-1])
    assert ok
    return data.tobytes()


def clip_row(clip_id: str, w: int, h: int, n: int, fps: int, **extra) -> dict:
    return {"format": FORMAT_ID, "clip_id": clip_id, "video_path": f"/src/{clip_id}.mp4",
            "video_sha256": "0" * 64, "start_s": 0.0, "end_s": n / fps, "start_frame": 0, "end_frame": n,
            "num_frames": n, "fps": float(fps), "width": w, "height": h, "duration_s": n / fps,
            "aesthetic": 5.0, "motion_mean": 1.0, "caption_source": "original", **extra}


def write_dataset(root: Path, clips: list[dict], shard_sizes: list[int] | None = None,
                  images: list[dict] | None = None) -> Path:
    """Write DIR/shards/*.tar and DIR/clips.parquet. ``shard_sizes`` forces uneven shards (samples per shard)."""
    root.mkdir(parents=True, exist_ok=True)
    cuts = set(np.cumsum(shard_sizes).tolist()) if shard_sizes else set()
    rows = []
    with ShardWriter(root / SHARDS_SUBDIR, ShardWriterConfig(target_bytes=10 ** 9)) as w:
        samples = [("video", c) for c in clips] + [("image", c) for c in images or []]
        for i, (kind, c) in enumerate(samples):
            c = dict(c)
            status = c.pop("status", "ok")
            if kind == "video":
                media = {"mp4": encode_mp4(make_frames(i, c["num_frames"], c["width"], c["height"]), int(c["fps"]))}
            else:
                media = {"jpg": encode_jpg(c["width"], c["height"], i)}
            members = {**media, "json": json.dumps(c).encode()}
            if c.get("caption", True) is not None:
                members["txt"] = f"caption of {c['clip_id']}".encode()
            shard = w.write(c["clip_id"], members)
            rows.append({**{k: v for k, v in c.items() if k not in ("format", "captions")},
                         "shard": shard, "status": status, "reason": None if status == "ok" else "test"})
            if i + 1 in cuts:
                w.flush()
    pq.write_table(pa.Table.from_pylist(rows), root / CLIPS_FILE)
    return root


# Test bucket table: tiny shapes so decode + resize is fast.
TEST_BUCKETS = BucketTable(
    buckets=[BucketConfig(32, 32, 4, 2, "sq"), BucketConfig(24, 40, 4, 3, "wide"),
             BucketConfig(32, 32, 1, 4, "img")],
    fps=8.0, max_upscale=1.0, min_crop_keep=0.5)


def standard_clips() -> tuple[list[dict], list[dict]]:
    """12 square-ish clips (-> 'sq', bs 2), 9 wide clips (-> 'wide', bs 3), 8 images (-> 'img', bs 4)."""
    clips = [clip_row(f"sq{i:02d}", 40, 40, 12, 8) for i in range(12)]
    clips += [clip_row(f"wd{i:02d}", 64, 40, 12, 16) for i in range(9)]
    images = [{"clip_id": f"im{i:02d}", "width": 40, "height": 40, "caption_source": "alt"} for i in range(8)]
    return clips, images


def write_captioned_dataset(root: Path, squares: int, wides: int, shard_sizes: list[int]) -> Path:
    """``squares`` 40x40 and ``wides`` 64x40 clips in shards of ``shard_sizes``, indexed, each with a stored
    caption "stored <clip_id>" (version v1) merged into captions.parquet: the dataset the S3 tests upload."""
    from reelforge.shards.captions import caption_row, merge, write_part
    from reelforge.shards.index import build_index

    clips = [clip_row(f"sq{i:02d}", 40, 40, 12, 8) for i in range(squares)] + [
        clip_row(f"wd{i}", 64, 40, 12, 16) for i in range(wides)]
    root = write_dataset(root, clips, shard_sizes=shard_sizes)
    build_index(root, TEST_BUCKETS)
    write_part(root, "v1", [caption_row(c["clip_id"], "v1", f"stored {c['clip_id']}") for c in clips])
    merge(root)
    return root
