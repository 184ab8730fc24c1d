"""Helpers for the captioning tests (a uniquely named module, importable as ``caption_fixtures``)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shards"))  # shard_fixtures


def make_dataset(root: Path, n: int = 6, broken: tuple[int, ...] = ()) -> Path:
    """``n`` 48x32 clips of 16 frames at 8 fps (sidecar ``.txt`` captions, caption_source=sidecar), indexed.
    Clips at ``broken`` positions get an mp4 member that is not a video."""
    from shard_fixtures import clip_row, write_dataset

    from reelforge.shards.index import build_index
    clips = [clip_row(f"c{i:02d}", 48, 32, 16, 8, caption_source="sidecar") for i in range(n)]
    write_dataset(root, clips)
    if broken:
        _break_members(root, [f"c{i:02d}" for i in broken])
    build_index(root)
    return root


def _break_members(root: Path, clip_ids: list[str]) -> None:
    """Overwrite the mp4 data of ``clip_ids`` in place with junk (same size: offsets stay valid)."""
    from reelforge.shards.tarscan import scan_tar
    for tar in (root / "shards").glob("*.tar"):
        scan = scan_tar(tar)
        with open(tar, "r+b") as f:
            for s in scan.samples:
                if s.key in clip_ids:
                    m = s.members["mp4"]
                    f.seek(m.offset)
                    f.write(b"\0" * m.size)


def job_config(model: Path, **over):
    """A RecaptionConfig for the tiny model: short captions, small chunks and parts."""
    from reelforge.recaption.captioner import CaptionerConfig, GenerationSettings
    from reelforge.recaption.frames import FrameConfig
    from reelforge.recaption.job import RecaptionConfig
    # random weights: force a few tokens so most captions pass min_words=1 (failures are still possible)
    gen = GenerationSettings(max_new_tokens=12, min_new_tokens=8)
    retry = GenerationSettings(max_new_tokens=12, min_new_tokens=8, do_sample=True, repetition_penalty=1.3)
    cfg = dict(captioner=CaptionerConfig(model=str(model), batch_size=2, generation=gen, retry=retry),
               frames=FrameConfig(num_frames=4, max_pixels=56 * 56), chunk_clips=2, part_clips=2, actors=1,
               actor_cpus=0.5, min_words=1)
    cfg.update(over)
    return RecaptionConfig(**cfg)
