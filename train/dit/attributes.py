"""The attribute clips (reelforge/samples.py "attributes" preset) as DiT training data, and the pixel
oracle that scores generated videos for the text-to-video quality number.

The clips are rendered frames (exact, no codec loss) with their true description as the caption; the
(colour, direction) pairs in ``ATTRIBUTE_HELD_OUT`` never reach the training shards and are what the
quality check prompts for. The oracle needs no model: the backgrounds are gray (zero saturation), so
saturated pixels are the object; their mean colour names it and their centroid's path gives the motion.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from reelforge.samples import (ATTRIBUTE_BACKGROUNDS, ATTRIBUTE_COLORS, ATTRIBUTE_DIRECTIONS, ATTRIBUTE_HELD_OUT,
                               ATTRIBUTE_SHAPES,
                               PALETTE, attribute_spec, attribute_specs, describe_video, render_frames)
from reelforge.train.dit.data import write_latent_shards

SATURATION_MIN = 60        # max - min channel: gray texture is 0, the palette colours are > 150
MIN_PIXELS = 2             # fewer saturated pixels in a frame: no object seen in it
MIN_SPEED = 0.15           # px/frame of the centroid, as a share of frame size / 64: slower is "static"


def caption(spec) -> str:
    return describe_video(spec)


def held_out_prompts() -> list[dict]:
    """One prompt per held-out (colour, direction) × shape × background: {prompt, color, direction}."""
    out = []
    for color, direction in ATTRIBUTE_HELD_OUT:
        for shape in ATTRIBUTE_SHAPES:
            for background in ATTRIBUTE_BACKGROUNDS:
                spec = attribute_spec(color, direction, shape, background)
                out.append({"prompt": caption(spec), "color": color, "direction": direction})
    return out


def seen_prompts() -> list[dict]:
    """One prompt per training (colour, direction) pair, shapes and backgrounds alternating: the
    in-distribution reference the held-out accuracy is read against."""
    out = []
    pairs = [(c, d) for c in ATTRIBUTE_COLORS for d in ATTRIBUTE_DIRECTIONS if (c, d) not in ATTRIBUTE_HELD_OUT]
    for i, (color, direction) in enumerate(pairs):
        spec = attribute_spec(color, direction, ATTRIBUTE_SHAPES[i % 2], ATTRIBUTE_BACKGROUNDS[(i // 2) % 2])
        out.append({"prompt": caption(spec), "color": color, "direction": direction})
    return out


def build_attribute_latents(out_dir: str | Path, codec, encoder, seed: int = 0, variants: int = 4,
                            size: int = 64, frames: int = 8) -> dict:
    """Render the training clips (and, as ``val``, the held-out ones) through ``codec`` into latent
    shards with text embeddings and the empty caption's; returns {"train": dir, "val": dir,
    "train_clips": n, "val_clips": n, "latent_shape": [C, T, h, w]}. ``frames`` must suit the codec
    (1 + 4k for a 4× causal VAE)."""
    from reelforge.train.dit.task import null_text_path

    out = Path(out_dir)
    dirs = {}
    for split, held in (("train", False), ("val", True)):
        specs = attribute_specs(seed, held_out=held, variants=variants, size=size, frames=frames)
        captions = [caption(s) for s in specs]
        tokens, mask = encoder.encode(captions)
        samples = []
        for i, spec in enumerate(specs):
            video = torch.from_numpy(np.stack(list(render_frames(spec))))[None]             # (1, T, H, W, 3)
            latent = codec.encode(video)[0].numpy()                                           # (C, T, h, w)
            color, direction = _attrs(spec)[:2]
            samples.append({"key": spec.name, "latent": latent, "text": tokens[i][mask[i]].numpy(),
                            "meta": {"caption": captions[i], "fps": spec.fps, "width": size, "height": size,
                                     "codec": codec.name, "color": color, "direction": direction}})
        dirs[split] = out / split
        write_latent_shards(dirs[split], samples, shard_size=64)
        null, null_mask = encoder.empty()
        np.save(null_text_path(dirs[split]), null[0][null_mask[0]].numpy().astype(np.float16))
        dirs[f"{split}_clips"] = len(samples)
        dirs["latent_shape"] = list(samples[0]["latent"].shape)                          # (C, T, h, w)
    return dirs


def _attrs(spec) -> tuple[str, str, str, str]:
    _, color, direction, shape, background, _ = spec.name.split("_")
    return color, direction, shape, background


def oracle(video: np.ndarray) -> dict:
    """(T, H, W, 3) uint8 → {"color": one of ATTRIBUTE_COLORS or None, "direction": left/right/up/down
    or None, "pixels": mean object pixels per frame}. None: no object found, or it does not move."""
    v = video.astype(np.int16)
    sat = v.max(-1) - v.min(-1)                                                              # (T, H, W)
    mask = sat > SATURATION_MIN
    counts = mask.reshape(len(v), -1).sum(1)                                                 # (T,)
    result = {"color": None, "direction": None, "pixels": float(counts.mean())}
    if counts.sum() < MIN_PIXELS:
        return result
    mean_rgb = v[mask].mean(0)                                                               # (3,)
    ref = np.float32([PALETTE[c] for c in ATTRIBUTE_COLORS])
    result["color"] = ATTRIBUTE_COLORS[int(np.argmin(((ref - mean_rgb) ** 2).sum(1)))]
    seen = [t for t in range(len(v)) if counts[t] >= MIN_PIXELS]
    if len(seen) < 2:
        return result
    ys, xs = np.mgrid[0:v.shape[1], 0:v.shape[2]]
    cx = np.array([xs[mask[t]].mean() for t in seen])
    cy = np.array([ys[mask[t]].mean() for t in seen])
    ts = np.array(seen, np.float64)
    sx, sy = np.polyfit(ts, cx, 1)[0], np.polyfit(ts, cy, 1)[0]                             # px / frame
    if max(abs(sx), abs(sy)) < MIN_SPEED * v.shape[2] / 64:
        return result
    result["direction"] = ("right" if sx > 0 else "left") if abs(sx) >= abs(sy) else ("down" if sy > 0 else "up")
    return result
