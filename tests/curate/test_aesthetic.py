"""Aesthetic stage: the real LAION heads against their oracle, and the whole stage on a tiny open_clip
model built and loaded through the same calls a user's ViT-L-14 checkpoint takes."""
import json

import numpy as np
import pytest
import torch
from filter_rows import shot_row

from reelforge.curate.aesthetic_head import LinearAestheticHead, load_aesthetic_head
from reelforge.curate.clip_models import load_clip, save_random_clip
from reelforge.curate.stages.aesthetic import AestheticConfig, AestheticStage
from reelforge.samples import ShotSpec

HEADS = {"improved_mlp": "improved_sac+logos+ava1-l14-linearMSE.pth",
         "laion_linear": "laion_sa_0_4_vit_l_14_linear.pth"}


@pytest.mark.shared
@pytest.mark.parametrize("key", sorted(HEADS))
def test_real_heads_reproduce_the_oracle(shared_dir, key):
    root = shared_dir / "weights" / "aesthetic"
    if not (root / "ORACLE.json").is_file():
        pytest.skip("aesthetic weights absent from ../shared")
    oracle = json.loads((root / "ORACLE.json").read_text())
    head = load_aesthetic_head(root / HEADS[key])
    for i in range(10):
        emb = torch.from_numpy(np.load(root / "vit_l_14_rating_embeddings" / f"rating{i}.npy")).float()
        with torch.no_grad():
            got = head(emb).item()
        assert got == pytest.approx(oracle[f"rating{i}"][key], abs=oracle["tolerance"]), (key, i)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random CLIP (config JSON + checkpoint file) and a random linear head for it."""
    out = tmp_path_factory.mktemp("tiny_clip")
    cfg_path, ckpt = save_random_clip(out, name="rf-test-tiny-clip", seed=0)
    torch.manual_seed(1)
    head = LinearAestheticHead(64)
    torch.save(head.linear.state_dict(), out / "head.pth")
    return {"model": "rf-test-tiny-clip", "model_config": str(cfg_path), "pretrained": str(ckpt),
            "head": str(out / "head.pth"), "dir": out}


def _cfg(tiny, **kw):
    return AestheticConfig(model=tiny["model"], model_config=tiny["model_config"], pretrained=tiny["pretrained"],
                           head=tiny["head"], device="cpu", **kw)


def test_checkpoint_weights_are_the_ones_used(tiny):
    # a second random checkpoint under the same name must give different embeddings: the file is read
    other_cfg, other_ckpt = save_random_clip(tiny["dir"] / "other", name="rf-test-tiny-clip", seed=7)
    frames = shot_row(ShotSpec(8, "checker", (200, 60, 60), "circle", motion="object"))["frames"]
    a = load_clip(tiny["model"], tiny["pretrained"], "cpu", tiny["model_config"]).encode_images(frames)
    b = load_clip(tiny["model"], str(other_ckpt), "cpu", str(other_cfg)).encode_images(frames)
    assert a.shape == (8, 64) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert not np.allclose(a, b, atol=1e-3)


def test_stage_scores_and_embeds_every_clip(tiny):
    rows = [shot_row(ShotSpec(8, bg, (200, 60, 60), "circle", motion="object"), clip_id=bg)
            for bg in ("checker", "noise", "stripes")]
    rows[1]["status"] = "filtered"  # still scored: thresholds can be re-applied later
    rows[2]["status"] = "failed"
    batch = {k: [r[k] for r in rows] for k in rows[0]}
    out = AestheticStage(_cfg(tiny))(batch)
    assert all(isinstance(v, float) for v in out["aesthetic"][:2]) and out["aesthetic"][2] is None
    emb = np.array(out["clip_embedding"][:2])
    assert emb.shape == (2, 64) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert out["aesthetic_skip"] == [None, None, None]
    # the score is the head on the frame embeddings, averaged
    clip = load_clip(tiny["model"], tiny["pretrained"], "cpu", tiny["model_config"])
    head = load_aesthetic_head(tiny["head"])
    with torch.no_grad():
        expect = head(torch.from_numpy(clip.encode_images(rows[0]["frames"]))).mean().item()
    assert out["aesthetic"][0] == pytest.approx(expect, abs=1e-5)


def test_threshold_reason(tiny):
    cfg = _cfg(tiny, min_score=4.5)
    assert cfg.check({"aesthetic": 3.21}) == "aesthetic: aesthetic=3.21 < min 4.5"
    assert cfg.check({"aesthetic": 5.0}) is None and cfg.check({"aesthetic": None}) is None


def test_without_weights_the_stage_records_why_and_scores_nothing():
    row = shot_row(ShotSpec(4, "noise", (10, 200, 10), None, motion="static"))
    out = AestheticStage(AestheticConfig())({k: [v] for k, v in row.items()})
    assert out["aesthetic"] == [None] and out["clip_embedding"] == [None]
    assert "aesthetic.pretrained is empty" in out["aesthetic_skip"][0] and out["status"] == ["ok"]
    assert AestheticStage.resources(AestheticConfig()).concurrency is None  # no actor to hold nothing


def test_embeddings_without_a_head(tiny):
    cfg = AestheticConfig(model=tiny["model"], model_config=tiny["model_config"], pretrained=tiny["pretrained"],
                          device="cpu")
    row = shot_row(ShotSpec(4, "noise", (10, 200, 10), None, motion="static"))
    out = AestheticStage(cfg)({k: [v] for k, v in row.items()})
    assert out["aesthetic"] == [None] and len(out["clip_embedding"][0]) == 64
    assert "head is empty" in out["aesthetic_skip"][0]


def test_bad_frames_fail_one_row(tiny):
    good = shot_row(ShotSpec(4, "noise", (10, 200, 10), None, motion="static"))
    batch = {k: [v, v] for k, v in good.items()}
    batch["frames"] = [good["frames"], np.zeros((4, 8, 8), np.uint8)]
    out = AestheticStage(_cfg(tiny))(batch)
    assert out["status"] == ["ok", "failed"] and out["reason"][1].startswith("aesthetic: frames must be")


def test_missing_files_are_clear_errors(tiny):
    with pytest.raises(FileNotFoundError, match="aesthetic head not found"):
        load_aesthetic_head(tiny["dir"] / "nope.pth")
    with pytest.raises(FileNotFoundError, match="CLIP checkpoint not found"):
        load_clip(tiny["model"], "/nonexistent/ckpt.pt", "cpu", tiny["model_config"])


def test_resources_ask_for_an_actor(tiny):
    res = AestheticStage.resources(_cfg(tiny, concurrency=3))
    assert res.concurrency == 3 and res.num_gpus == 0.0


def test_clips_of_different_sizes_share_a_batch(tiny):
    rows = [shot_row(ShotSpec(4, "noise", (10, 200, 10), None, motion="static"), width=w, height=h, clip_id=str(w))
            for w, h in ((320, 240), (480, 270), (160, 120))]
    out = AestheticStage(_cfg(tiny))({k: [r[k] for r in rows] for k in rows[0]})
    assert out["status"] == ["ok"] * 3 and all(len(e) == 64 for e in out["clip_embedding"])
