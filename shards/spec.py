"""The shard format: the contract between curation and training (see shards/SPEC.md).

A shard is a POSIX tar readable by ``tar`` and ``webdataset``. Samples are consecutive members that share
a key (``<clip_id>``); each sample has:

- ``<key>.mp4``  H.264 clip (yuv420p, even dimensions, constant frame rate), plays in any player
- ``<key>.json`` metadata (UTF-8 JSON object, fields below)
- ``<key>.txt``  caption (UTF-8), present when a caption exists
- ``<key>.jpg``  for image samples instead of ``mp4``
- ``<key>.latent.npy`` reserved for pre-extracted VAE latents (roadmap)
"""
from __future__ import annotations

FORMAT_ID = "reelforge.shard.v1"

VIDEO_EXT = "mp4"
IMAGE_EXT = "jpg"
META_EXT = "json"
CAPTION_EXT = "txt"
LATENT_EXT = "latent.npy"

# JSON fields every video sample carries (scores and extra fields may follow).
REQUIRED_JSON_FIELDS = (
    "format",
    "clip_id",
    "video_path",
    "video_sha256",
    "start_s",
    "end_s",
    "start_frame",
    "end_frame",
    "num_frames",
    "fps",
    "width",
    "height",
)

SHARD_PATTERN = "{prefix}-{index:06d}.tar"
DEFAULT_TARGET_BYTES = 256 * 1024 * 1024
