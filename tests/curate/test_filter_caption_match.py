"""Caption-clip match through a tiny CLIP loaded like a real checkpoint."""
import numpy as np
import pytest
from filter_rows import shot_row

from reelforge.curate.clip_models import load_clip, save_random_clip
from reelforge.curate.stages.caption_match import CaptionMatchConfig, CaptionMatchStage
from reelforge.samples import ShotSpec


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cfg_path, ckpt = save_random_clip(tmp_path_factory.mktemp("cm_clip"), name="rf-cm-tiny-clip", seed=3)
    return CaptionMatchConfig(model="rf-cm-tiny-clip", model_config=str(cfg_path), pretrained=str(ckpt),
                              device="cpu")


def test_similarity_is_mean_frame_text_cosine(cfg):
    row = shot_row(ShotSpec(8, "checker", (200, 60, 60), "circle", motion="object"))
    row["caption"] = "a white circle moves right over a red checkerboard"
    out = CaptionMatchStage(cfg)({k: [v] for k, v in row.items()})
    clip = load_clip(cfg.model, cfg.pretrained, "cpu", cfg.model_config)
    expect = float((clip.encode_images(row["frames"]) @ clip.encode_texts([row["caption"]])[0]).mean())
    assert out["caption_match"][0] == pytest.approx(expect, abs=1e-5) and -1 <= expect <= 1


def test_stored_embedding_stands_in_for_frames(cfg):
    clip = load_clip(cfg.model, cfg.pretrained, "cpu", cfg.model_config)
    emb = clip.encode_images(shot_row(ShotSpec(4, "noise", (10, 200, 10), None, motion="static"))["frames"])
    mean = emb.mean(0) / np.linalg.norm(emb.mean(0))
    row = {"clip_id": "x", "status": "ok", "caption": "green noise", "frames": None, "clip_embedding": mean.tolist()}
    out = CaptionMatchStage(cfg)({k: [v] for k, v in row.items()})
    assert out["caption_match"][0] == pytest.approx(float(mean @ clip.encode_texts(["green noise"])[0]), abs=1e-5)


def test_empty_caption_and_no_weights_are_not_scored(cfg):
    row = shot_row(ShotSpec(4, "noise", (10, 200, 10), None, motion="static"))
    assert CaptionMatchStage(cfg)({k: [v] for k, v in row.items()})["caption_match"] == [None]
    row["caption"] = "something"
    assert CaptionMatchStage(CaptionMatchConfig())({k: [v] for k, v in row.items()})["caption_match"] == [None]


def test_threshold_reason():
    assert CaptionMatchConfig(min_similarity=0.2).check({"caption_match": 0.11}) == \
        "caption_match: caption_match=0.11 < min 0.2"
