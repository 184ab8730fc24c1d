"""The shard format: the contract between curation and training (see shards/SPEC.md).

A shard is a POSIX tar readable by ``tar`` and ``webdataset``. Samples are consecutive members that share
a key (``<clip_id>``); each sample has:

- ``<key>.mp4``  H.264 clip (yuv420p, even dimensions, constant frame rate), plays in any player
- ``<key>.json`` metadata (UTF-8 JSON object, fields below)
- ``<key>.txt``  caption (UTF-8), present when a caption exists
- ``<key>.jpg``  for image samples instead of ``mp4``
- ``<key>.latent.npy`` pre-extracted VAE latents (``reelforge encode``; SPEC.md "Latents")
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

# --- added with the index, reader and tools (issue 5) -------------------------------------------------

SHARDS_SUBDIR = "shards"          # DIR/shards/*.tar
CLIPS_FILE = "clips.parquet"      # written by the build: one row per clip
INDEX_FILE = "index.parquet"      # written by build_index: one row per sample in a shard
INDEX_FORMAT_ID = "reelforge.index.v1"

# Optional JSON fields with a fixed meaning.
CAPTIONS_FIELD = "captions"          # {version_name: caption text}; `<key>.txt` is the default version
CAPTION_SOURCE_FIELD = "caption_source"

# Member extensions the index records offsets for (``latent.npy`` -> column prefix ``latent``).
INDEXED_EXTS = (VIDEO_EXT, IMAGE_EXT, META_EXT, CAPTION_EXT, LATENT_EXT)

# Sample kinds: a video sample has ``mp4``; an image sample has ``jpg`` (and is a 1-frame clip).
KIND_VIDEO = "video"
KIND_IMAGE = "image"


def member_column(ext: str) -> str:
    """Index column prefix for a member extension: ``mp4`` -> ``mp4``, ``latent.npy`` -> ``latent``."""
    return ext.split(".")[0]


# Columns the index owns; a JSON field or clips.parquet column of the same name never overrides them.
OWN_COLUMNS = {"key", "shard", "kind", "bucket", "caption_versions", "has_caption"} | {
    f"{member_column(e)}_{s}" for e in INDEXED_EXTS for s in ("offset", "size")}
