"""Near-duplicate search: planted duplicates in random embeddings, streaming input, the reason strings,
and whole clips (exact copy, re-encoded copy, different content) through a tiny CLIP."""
import numpy as np
import pyarrow as pa
import pytest
from filter_rows import encoded_row, shot_row

from reelforge.curate.clip_models import save_random_clip
from reelforge.curate.dedup import (DedupConfig, apply_dedup, find_duplicates, read_embeddings,
                                    write_embeddings)
from reelforge.curate.stages.aesthetic import AestheticConfig, AestheticStage
from reelforge.samples import ShotSpec


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _planted(n=3000, d=64, pairs=40, seed=0):
    """n random unit vectors; the last `pairs` are near-copies (cos ~0.99) of the first `pairs`."""
    rng = np.random.default_rng(seed)
    emb = _unit(rng.standard_normal((n, d))).astype(np.float32)
    noise = _unit(rng.standard_normal((pairs, d)))
    emb[n - pairs:] = _unit(emb[:pairs] + 0.1 * noise)  # angle ~ atan(0.1): cos ~ 0.995
    ids = [f"c{i:05d}" for i in range(n)]
    return ids, emb


def test_finds_every_planted_pair_and_nothing_else():
    ids, emb = _planted()
    quality = np.zeros(len(ids))
    quality[:40] = 5.0  # originals are better: they are kept
    dups = find_duplicates(ids, emb, quality, DedupConfig(threshold=0.98))
    assert set(dups) == set(ids[-40:])
    for i in range(40):
        kept, cos = dups[ids[-40 + i]]
        assert kept == ids[i] and cos == pytest.approx(float(emb[i] @ emb[-40 + i]), abs=1e-5) and cos >= 0.98


def test_keeps_the_best_scoring_member():
    ids, emb = _planted(n=500, pairs=10)
    quality = np.zeros(len(ids))
    quality[-10:] = 9.0  # now the copies are better
    dups = find_duplicates(ids, emb, list(quality), DedupConfig())
    assert set(dups) == set(ids[:10]) and dups[ids[0]][0] == ids[-10]


def test_groups_name_a_kept_clip_never_a_dropped_one():
    rng = np.random.default_rng(3)
    base = _unit(rng.standard_normal(32))
    group = _unit(base + 0.02 * rng.standard_normal((6, 32))).astype(np.float32)  # 6 mutual near-copies
    ids = [f"g{i}" for i in range(6)]
    dups = find_duplicates(ids, group, [float(i) for i in range(6)], DedupConfig())
    assert set(dups) == set(ids[:5]) and {k for k, _ in dups.values()} == {"g5"}


def test_streamed_chunks_give_the_same_answer():
    ids, emb = _planted(n=2000, pairs=25, seed=1)
    whole = find_duplicates(ids, emb, None, DedupConfig())
    streamed = find_duplicates(ids, (emb[i:i + 300] for i in range(0, len(emb), 300)), None, DedupConfig())
    assert whole == streamed and len(whole) == 25


def test_chunk_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="got 10 embeddings for 11"):
        find_duplicates([str(i) for i in range(11)], iter([np.zeros((10, 8), np.float32)]))


def test_scales_without_an_all_pairs_matrix():
    # 60k x 64: an all-pairs float32 matrix would be 14 GB; LSH verifies only shared buckets
    ids, emb = _planted(n=60_000, pairs=30, seed=2)
    dups = find_duplicates(ids, emb, None, DedupConfig())
    # equal quality: the lower clip_id of each pair is kept
    assert dups == {ids[-30 + i]: (ids[i], pytest.approx(float(emb[i] @ emb[-30 + i]), abs=1e-5))
                    for i in range(30)}


def test_embeddings_roundtrip_and_apply_dedup_reason(tmp_path):
    ids, emb = _planted(n=50, pairs=2, seed=4)
    rows = [{"clip_id": i, "status": "ok", "reason": None, "aesthetic": 5.0 if n < 2 else 4.0,
             "clip_embedding": e.tolist()} for n, (i, e) in enumerate(zip(ids, emb))]
    rows[10]["status"] = "filtered"
    rows[10]["reason"] = "motion: motion_mean=0 < min 0.0005"
    path = tmp_path / "embeddings.parquet"
    assert write_embeddings(rows, path) == 50
    rid, remb = read_embeddings(path)
    assert rid == ids and np.allclose(remb, emb)
    out = apply_dedup(rows, path, DedupConfig())
    dropped = [r for r in out if r["status"] == "filtered" and r["reason"].startswith("dedup")]
    assert [r["clip_id"] for r in dropped] == ids[-2:]
    cos = float(emb[0] @ emb[-2])
    assert dropped[0]["reason"] == f"dedup: cosine={cos:.4f} to {ids[0]} >= 0.98"
    assert out[10]["reason"].startswith("motion")  # other filters' decisions are untouched
    table = apply_dedup(pa.Table.from_pylist(rows), read_embeddings(path), DedupConfig())
    assert isinstance(table, pa.Table) and table.column("dedup_of").to_pylist()[-2:] == ids[:2]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    cfg_path, ckpt = save_random_clip(tmp_path_factory.mktemp("dedup_clip"), name="rf-dedup-tiny-clip")
    return AestheticConfig(model="rf-dedup-tiny-clip", model_config=str(cfg_path), pretrained=str(ckpt),
                           device="cpu")


def test_exact_and_reencoded_duplicates_of_whole_clips(tmp_path, tiny_clip):
    shot = ShotSpec(30, "checker", (200, 60, 60), "circle", motion="object")
    other = ShotSpec(30, "noise", (40, 120, 220), "square", (250, 250, 0), motion="object", direction="up")
    rows = [shot_row(shot, clip_id="orig"), shot_row(shot, clip_id="copy"),
            encoded_row(shot, tmp_path, clip_id="reenc", codec="mpeg4"),
            shot_row(other, clip_id="other", seed=5)]
    batch = {k: [r.get(k) for r in rows] for k in rows[0]}
    out = AestheticStage(tiny_clip)(batch)
    emb = np.array(out["clip_embedding"], dtype=np.float32)
    quality = [3.0, 2.0, 1.0, 2.0]  # the original scores best
    # A *random* CLIP maps all images into a narrow cone (distinct clips here sit at cos ~0.98-0.99),
    # so the test threshold is tighter than the 0.98 meant for trained weights; the re-encode stays
    # above it, the other clip below.
    cfg = DedupConfig(threshold=0.997)
    dups = find_duplicates(out["clip_id"], emb, quality, cfg)
    assert set(dups) == {"copy", "reenc"}
    assert dups["copy"] == ("orig", pytest.approx(1.0, abs=1e-5))
    assert dups["reenc"][0] == "orig" and dups["reenc"][1] >= 0.997


def test_config_validation():
    with pytest.raises(ValueError, match="threshold"):
        DedupConfig(threshold=1.5)
    with pytest.raises(ValueError, match="bits"):
        DedupConfig(bits=0)
