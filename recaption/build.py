"""Captioning as the last step of a build: caption the kept clips, then score ``caption_match`` on the
new captions so the decision (and ``clips.parquet``'s funnel) counts it.

``run_build`` calls ``caption_build`` after its finish step has decided statuses and published the kept
clips (so only kept clips are captioned, read from the published shards by index offset). The
caption_match scores go to ``DIR/caption_match.parquet`` (clip_id, caption_version, caption_match,
caption_match_reason); the build's finish merges them into the clip rows (``add_caption_scores``)
before deciding, so a re-decision (the build's second finish, ``--refilter``) applies the caption_match
threshold like any other and the funnel counts what it removed. Where the scores cannot be computed the
reason is recorded per clip (no CLIP weights configured, stage disabled, no caption of the version, no
embedding); an unscored clip is never filtered.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from reelforge import storage
from reelforge.cluster import RayConfig
from reelforge.recaption.job import RecaptionConfig, caption_dataset

SCORES_FILE = "caption_match.parquet"
_SCHEMA = pa.schema([("clip_id", pa.string()), ("caption_version", pa.string()), ("caption_match", pa.float64()),
                     ("caption_match_reason", pa.string())])


def caption_build(out: str | Path, cfg: RecaptionConfig, match_cfg, ray_cfg: RayConfig | None = None) -> dict:
    """Caption the index's ok clips (the build's kept clips) and score caption_match; returns a summary.
    ``match_cfg`` is the build's ``CaptionMatchConfig`` (curate.filters.caption_match)."""
    from reelforge.shards.index import select
    out = storage.as_path_or_url(out)   # a local dir or a URL (s3://…)
    kept = set(select(out).column("clip_id").to_pylist()) if storage.exists(storage.join(out, "index.parquet")) else set()
    captions = caption_dataset(out, cfg, ray_cfg, clip_ids=kept)
    return {"captions": captions, "caption_match": score_caption_match(out, captions["version"], kept, match_cfg)}


def score_caption_match(out: Path | str, version: str, clip_ids: set[str], cfg) -> dict:
    """CLIP text-frame similarity of ``version``'s captions for ``clip_ids`` -> ``DIR/caption_match.parquet``."""
    from reelforge.shards.captions import captions_for
    caps = captions_for(out, version)
    ids = sorted(clip_ids)
    scores: dict[str, float | None] = {cid: None for cid in ids}
    reasons: dict[str, str | None] = {}
    if not cfg.enabled:
        reasons = {cid: "caption_match: disabled (curate.filters.caption_match.enabled)" for cid in ids}
    elif not cfg.pretrained:
        reasons = {cid: "caption_match: no CLIP weights configured (curate.filters.caption_match.pretrained is "
                        "empty); not scored" for cid in ids}
    else:
        scores, reasons = _score(out, ids, caps, cfg)
    rows = [{"clip_id": cid, "caption_version": version, "caption_match": scores.get(cid),
             "caption_match_reason": reasons.get(cid)} for cid in ids]
    storage.write_parquet(pa.Table.from_pylist(rows, schema=_SCHEMA), storage.join(out, SCORES_FILE))
    scored = sum(r["caption_match"] is not None for r in rows)
    reasons_seen = sorted({r["caption_match_reason"] for r in rows if r["caption_match_reason"]})
    return {"version": version, "clips": len(rows), "scored": scored, "reasons": reasons_seen[:5]}


def _score(out: Path | str, ids: list[str], caps: dict[str, str], cfg) -> tuple[dict, dict]:
    """Scores through ``CaptionMatchStage``: the stored CLIP clip embeddings stand in for frames (the
    same embedding space as the aesthetic stage); clips without one are decoded from the shards."""
    from reelforge.curate.stages.caption_match import CaptionMatchStage
    from reelforge.recaption.frames import FrameConfig, decode_rows
    from reelforge.shards.index import select

    stage = CaptionMatchStage(cfg)
    emb: dict[str, np.ndarray] = {}
    if storage.exists(storage.join(out, "embeddings.parquet")):
        from reelforge.curate.dedup import read_embeddings
        with storage.local_source(storage.join(out, "embeddings.parquet")) as local:
            e_ids, e = read_embeddings(local)
        emb = dict(zip(e_ids, e))
    index_rows = {r["clip_id"]: r for r in select(out).to_pylist()}
    scores, reasons = {}, {}
    todo = [cid for cid in ids if caps.get(cid)]
    for cid in ids:
        if not caps.get(cid):
            reasons[cid] = "caption_match: no ok caption of this version"
    for i in range(0, len(todo), cfg.batch_size):
        chunk = todo[i:i + cfg.batch_size]
        batch = {"clip_id": chunk, "caption": [caps[c] for c in chunk], "status": ["ok"] * len(chunk)}
        if all(c in emb for c in chunk):
            batch["clip_embedding"] = [emb[c] for c in chunk]
        else:  # decode 4 frames per clip: the frames path of the stage
            clips, failed = decode_rows(out, [index_rows[c] for c in chunk if c in index_rows],
                                        FrameConfig(num_frames=4, max_pixels=224 * 224))
            frames = {c.clip_id: c.frames for c in clips}
            for f in failed:
                reasons[f.clip_id] = f"caption_match: {f.reason}"
            batch["frames"] = [frames.get(c) for c in chunk]
        result = stage(batch)
        for cid, score in zip(result["clip_id"], result["caption_match"]):
            scores[cid] = score
            if score is None:
                reasons.setdefault(cid, "caption_match: not scored (no embedding or frames)")
    return scores, reasons


def add_caption_scores(out: str | Path, rows: list[dict]) -> list[dict]:
    """The build's finish merges ``DIR/caption_match.parquet`` into its clip rows (in place; returns them)."""
    path = storage.join(out, SCORES_FILE)   # a local dir or a URL
    if not storage.exists(path):
        return rows
    by_id = {r["clip_id"]: r for r in storage.read_parquet(path).to_pylist()}
    for r in rows:
        s = by_id.get(r["clip_id"])
        if s is not None:
            r.update(caption_match=s["caption_match"], caption_match_reason=s["caption_match_reason"],
                     caption_version=s["caption_version"])
    return rows
