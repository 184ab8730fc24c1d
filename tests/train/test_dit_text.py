"""The frozen text encoder, loaded from a tiny random T5 saved locally (no hub)."""
from __future__ import annotations

import pytest
import torch

from reelforge.train.dit.text import TextEncoder, TextEncoderConfig, make_tiny_t5

CORPUS = ["A red circle moves left across a blue checkerboard.", "A green square moves up across stripes."]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory, monkeypatch_module=None):
    import os
    os.environ["HF_HUB_OFFLINE"] = "1"
    path = make_tiny_t5(tmp_path_factory.mktemp("t5") / "tiny-t5", CORPUS, d_model=32)
    return TextEncoder(TextEncoderConfig(name=str(path), max_length=16))


def test_encode_shapes_mask_and_padding_independence(encoder):
    tokens, mask = encoder.encode(["a red circle moves left", "green"])
    assert tokens.shape == (2, 6, 32) and tokens.dtype == torch.float32
    assert mask.tolist() == [[True] * 6, [True, True, False, False, False, False]]   # words + </s>
    assert float(tokens[1, 2:].abs().max()) == 0.0                                   # padding zeroed
    alone, _ = encoder.encode(["green"])
    assert torch.allclose(alone[0], tokens[1, :2], atol=1e-5)                       # batch padding is masked
    assert not torch.allclose(encoder.encode(["red"])[0], encoder.encode(["blue"])[0])


def test_empty_caption_is_one_token_and_cached(encoder):
    null, mask = encoder.empty()
    assert null.shape == (1, 1, 32) and mask.tolist() == [[True]]
    assert encoder.empty()[0] is null


def test_truncation_and_frozen(encoder):
    tokens, mask = encoder.encode([" ".join(["red"] * 40)])
    assert tokens.shape[1] == 16
    assert not any(p.requires_grad for p in encoder.model.parameters())


def test_empty_name_is_a_clear_error():
    with pytest.raises(ValueError, match="text.name"):
        TextEncoder(TextEncoderConfig(name=""))


def test_text_embeddings_added_to_latent_shards_once(encoder, tmp_path):
    import numpy as np

    from reelforge.train.dit.data import LatentShardDataset, add_text_embeddings, write_latent_shards

    samples = [{"key": f"k{i}", "latent": np.zeros((3, 1, 2, 2), np.float32),
                "meta": {"caption": "a red circle" if i % 2 else "green", "captions": {"v2": "blue"}}}
               for i in range(5)]
    write_latent_shards(tmp_path, samples, shard_size=2)
    assert not LatentShardDataset(tmp_path, 1).has_text
    assert add_text_embeddings(tmp_path, encoder) == 5
    assert add_text_embeddings(tmp_path, encoder, version="v2") == 5
    ds = LatentShardDataset(tmp_path, 5)
    assert ds.has_text and len(list(tmp_path.glob("*.partial"))) == 0
    batch = ds.load(sorted(ds.samples, key=lambda s: s["key"]))
    expected, mask = encoder.encode(["green", "a red circle"])
    assert batch["text_mask"][0].sum() == 2 and batch["text_mask"][1].sum() == 4     # words + </s>
    assert torch.allclose(batch["text"][1, :4], expected[1, :4], atol=1e-2)           # stored as float16
    v2 = LatentShardDataset(tmp_path, 5, caption_version="v2")
    assert v2.has_text and v2.load(v2.samples[:1])["caption"] == ["blue"]


def test_the_toy_encoder_is_saved_without_a_progress_bar(tmp_path, capfd):
    # the demo printed "Writing model shards: 100%|…" right after "dataset written to … shards/"
    from transformers.utils import logging as hf_logging

    make_tiny_t5(tmp_path / "t5", ["a red circle"])
    assert "Writing model shards" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # the user's setting is left as it was
