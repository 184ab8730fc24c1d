"""Decoding and checking single tar members by extension (used by verify, import and the reader)."""
from __future__ import annotations

import io
import json

import cv2
import numpy as np

MP4_BRANDS = (b"ftyp",)
JPEG_MAGIC = b"\xff\xd8\xff"


def open_video(data: bytes, width: int = -1, height: int = -1, num_threads: int = 1):
    """A decord VideoReader over in-memory mp4 bytes (optionally resizing inside the decoder)."""
    import av  # noqa: F401  before decord, whose bundled libvpx would shadow PyAV's (reelforge/__init__.py)
    import decord  # imported here so tools that never decode video don't pay for it
    return decord.VideoReader(io.BytesIO(data), ctx=decord.cpu(0), width=width, height=height,
                              num_threads=num_threads)


def probe_video(data: bytes) -> dict:
    """{'num_frames', 'fps', 'width', 'height'} of an mp4 member; raises ValueError if it is not a video."""
    if data[4:8] not in MP4_BRANDS:
        raise ValueError("not an mp4 (no ftyp box)")
    try:
        vr = open_video(data)
        h, w = vr[0].shape[:2]
        return {"num_frames": len(vr), "fps": float(vr.get_avg_fps()), "width": int(w), "height": int(h)}
    except Exception as exc:  # decord raises its own DECORDError for undecodable streams
        raise ValueError(f"undecodable video: {type(exc).__name__}: {str(exc)[:120]}") from exc


def decode_frames_pyav(data: bytes, indices: list[int] | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames at ``indices`` (all when None), decoding sequentially with PyAV.

    The fallback for streams decord mis-handles (it fails on some tiny widths such as 48 or 72 px).
    """
    import av
    want = None if indices is None else set(indices)
    last = -1 if indices is None else max(indices)
    got: dict[int, np.ndarray] = {}
    with av.open(io.BytesIO(data)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if want is None or i in want:
                got[i] = frame.to_ndarray(format="rgb24")
            if indices is not None and i >= last:
                break
    order = sorted(got) if indices is None else indices
    missing = [i for i in order if i not in got]
    if missing or not order:
        raise ValueError(f"video has no frames at {missing[:5] or 'all'}")
    return np.stack([got[i] for i in order])


def decode_all_frames(data: bytes, chunk: int = 32) -> int:
    """Decode every frame (in chunks, to bound memory); returns the frame count. Raises ValueError."""
    try:
        vr = open_video(data)
        n = len(vr)
        for start in range(0, n, chunk):
            vr.get_batch(list(range(start, min(n, start + chunk))))
        return n
    except Exception as exc:
        try:  # decord rejects some valid streams; the reader falls back to PyAV for those too
            return len(decode_frames_pyav(data))
        except Exception:
            raise ValueError(f"undecodable video: {type(exc).__name__}: {str(exc)[:120]}") from exc


def decode_image(data: bytes) -> np.ndarray:
    """(H, W, 3) uint8 RGB; raises ValueError when the bytes are not a decodable image."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("undecodable image")
    return img[:, :, ::-1]


def check_member(ext: str, data: bytes, full: bool = True) -> None:
    """Raise ValueError when a member is not what its extension says."""
    if ext == "mp4":
        decode_all_frames(data) if full else probe_video(data)
    elif ext == "jpg":
        if not data.startswith(JPEG_MAGIC):
            raise ValueError("not a JPEG (bad magic)")
        decode_image(data)
    elif ext == "json":
        try:
            json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"bad json: {exc}") from exc
    elif ext == "txt":
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"caption is not UTF-8: {exc}") from exc
    elif ext == "latent.npy":
        np.load(io.BytesIO(data), allow_pickle=False)
