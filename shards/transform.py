"""From member bytes to a bucket-shaped array: temporal sampling, decode, resize to cover, centre crop;
then the caption choice and the stacking into a batch. Shared by the indexed reader (reader.py) and the
streaming reader (stream.py), so both modes produce the same pixels for the same (seed, epoch, clip)."""
from __future__ import annotations

import math
import zlib
from typing import Callable

import cv2
import numpy as np
import torch

from reelforge.shards.buckets import BucketConfig
from reelforge.shards.members import decode_frames_pyav, decode_image, open_video


def frame_indices(num_frames: int, stride: float, count: int, rng: np.random.Generator | None) -> list[int]:
    """``count`` indices ``round(offset + i * stride)``; offset uniform over the valid range (centre if no rng)."""
    span = (count - 1) * stride
    slack = (num_frames - 1) - span
    if slack < -1e-6:
        raise ValueError(f"clip has {num_frames} frames, needs {math.floor(span) + 1} for {count} at stride {stride:.2f}")
    slack = max(0.0, slack)
    offset = rng.uniform(0.0, slack) if rng is not None else slack / 2
    return [min(num_frames - 1, int(math.floor(offset + i * stride + 0.5))) for i in range(count)]  # not round(): banker's rounding makes uneven steps


def cover_size(width: int, height: int, bucket: BucketConfig) -> tuple[int, int]:
    """(w, h) after the aspect-preserving resize that just covers the bucket."""
    scale = max(bucket.height / height, bucket.width / width)
    return max(bucket.width, int(math.ceil(width * scale - 1e-6))), max(bucket.height, int(math.ceil(height * scale - 1e-6)))


def center_crop(frames: np.ndarray, bucket: BucketConfig) -> np.ndarray:
    """(T, h, w, C) -> (T, H_b, W_b, C)."""
    h, w = frames.shape[1:3]
    top, left = (h - bucket.height) // 2, (w - bucket.width) // 2
    return frames[:, top:top + bucket.height, left:left + bucket.width]


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(T, h, w, C) -> (T, size[1], size[0], C) with area interpolation (downscaling is the common case)."""
    if frames.shape[2] == size[0] and frames.shape[1] == size[1]:
        return frames
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def video_to_bucket(data: bytes, width: int, height: int, stride: float, bucket: BucketConfig,
                    rng: np.random.Generator | None, num_threads: int = 1) -> np.ndarray:
    """mp4 bytes -> (T_b, H_b, W_b, 3) uint8. decord decodes and resizes in one pass (swscale);
    PyAV + OpenCV is the fallback for streams decord rejects."""
    size = cover_size(width, height, bucket)
    try:
        vr = open_video(data, width=size[0], height=size[1], num_threads=num_threads)
        idx = frame_indices(len(vr), stride, bucket.num_frames, rng)
        frames = vr.get_batch(idx).asnumpy()
    except ValueError:
        raise
    except Exception:
        frames = decode_frames_pyav(data)
        idx = frame_indices(len(frames), stride, bucket.num_frames, rng)
        frames = resize_frames(frames[idx], size)
    if frames.shape[1:3] != (size[1], size[0]):  # metadata disagreed with the stream: resize what we got
        frames = resize_frames(frames, cover_size(frames.shape[2], frames.shape[1], bucket))
    return np.ascontiguousarray(center_crop(frames, bucket))


def image_to_bucket(data: bytes, bucket: BucketConfig) -> np.ndarray:
    """jpg bytes -> (1, H_b, W_b, 3) uint8."""
    img = decode_image(data)[None]
    img = resize_frames(img, cover_size(img.shape[2], img.shape[1], bucket))
    return np.ascontiguousarray(center_crop(img, bucket))


def clip_rng(seed: int, epoch: int, clip_id: str) -> np.random.Generator:
    """The generator that draws a clip's temporal offset: fixed per (seed, epoch, clip), new each epoch."""
    return np.random.default_rng([seed, epoch, zlib.crc32(clip_id.encode())])


def pick_caption(version: str | None, fallback: bool, captions: dict | None, read_txt: Callable[[], str | None]) -> str:
    """``captions[version]`` (the JSON member's caption versions) when asked for and present; else the
    ``.txt`` caption unless ``fallback`` is off for a requested version; else "". ``read_txt`` is only
    called when the text is needed (the indexed reader then pays one read)."""
    if version is not None and isinstance(captions, dict) and isinstance(captions.get(version), str):
        return captions[version]
    if version is not None and not fallback:
        return ""
    return read_txt() or ""


def collate_clips(clips: list[np.ndarray], captions: list[str], ids: list[str], size: int, bucket: BucketConfig,
                  dtype: str = "uint8") -> tuple[torch.Tensor, list[str], list[str]]:
    """``size`` slots from the good clips (T, H, W, C): failed slots hold copies of good clips (a batch with
    none is zeros), so batches keep the bucket's shape and ranks stay in step.
    Returns video (B, T, C, H, W) uint8 (or float in [-1, 1]), captions, ids."""
    if not clips:
        clips, captions, ids = [np.zeros((bucket.num_frames, bucket.height, bucket.width, 3), np.uint8)], [""], [""]
    clips, captions, ids = list(clips), list(captions), list(ids)
    good = len(clips)
    for k in range(size - good):
        clips.append(clips[k % good]), captions.append(captions[k % good]), ids.append(ids[k % good])
    video = torch.from_numpy(np.stack(clips)).permute(0, 1, 4, 2, 3).contiguous()  # (B, T, C, H, W)
    if dtype == "float":
        video = video.float().div_(127.5).sub_(1.0)
    return video, captions, ids
