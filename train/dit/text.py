"""The frozen text encoder: T5 / UMT5 encoders (or any transformers text tower with a
``last_hidden_state``, e.g. CLIPTextModel) by hub id or local path.

    enc = TextEncoder(TextEncoderConfig(name="/models/umt5-xxl"))
    tokens, mask = enc.encode(["a red circle moves left"])   # (B, L, E) float32, (B, L) bool
    null, null_mask = enc.empty()                            # the empty caption, for guidance and dropout

Nothing here downloads at run time unless ``name`` is a hub id and the cache lacks it; tests and the
offline demo build a small randomly initialised T5 with a word-level tokenizer (``make_tiny_t5``) and
load it through the same path as a real checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor


@dataclass
class TextEncoderConfig:
    name: str = ""                       # hub id (google/umt5-xxl) or a local save_pretrained folder
    max_length: int = 64                 # tokens: longer captions are truncated
    dtype: Literal["float32", "bfloat16"] = "float32"
    device: str = "auto"                 # auto: cuda when available


def _encoder_class(model_type: str):
    import transformers as tf

    # T5 checkpoints hold an encoder and a decoder; only the encoder is loaded (half the memory)
    if model_type in ("t5", "mt5"):
        return tf.T5EncoderModel
    if model_type == "umt5":
        return tf.UMT5EncoderModel
    if model_type in ("clip", "clip_text_model"):
        return tf.CLIPTextModel
    return tf.AutoModel


class TextEncoder:
    """A frozen encoder in eval mode; ``encode`` returns token features with the padding mask."""

    def __init__(self, cfg: TextEncoderConfig):
        if not cfg.name:
            raise ValueError("text.name is empty: give a hub id (e.g. google/umt5-xl) or a local model folder")
        from transformers import AutoConfig, AutoTokenizer

        self.cfg = cfg
        self.device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available()
                                   else ("cpu" if cfg.device == "auto" else cfg.device))
        conf = AutoConfig.from_pretrained(cfg.name)
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.name)
        dtype = torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32
        model = _encoder_class(conf.model_type).from_pretrained(cfg.name, dtype=dtype)
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.dim = int(getattr(conf, "d_model", None) or conf.hidden_size)
        self._empty: tuple[Tensor, Tensor] | None = None

    @torch.no_grad()
    def encode(self, captions: list[str]) -> tuple[Tensor, Tensor]:
        """(B, L, E) float32 features on the CPU, and (B, L) bool mask (True = real token); L is the
        longest caption in the batch (at most max_length). Padding positions are zeroed."""
        tok = self.tokenizer(list(captions), padding="longest", truncation=True,
                             max_length=self.cfg.max_length, return_tensors="pt")
        ids, mask = tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device)
        out = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        out = out * mask[..., None]
        return out.cpu(), mask.bool().cpu()

    def empty(self) -> tuple[Tensor, Tensor]:
        """The empty caption's features (1, L0, E) and mask (1, L0): the unconditional input."""
        if self._empty is None:
            self._empty = self.encode([""])
        return self._empty


def make_tiny_t5(out_dir: str | Path, corpus: list[str], d_model: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Save a randomly initialised T5 encoder with a word-level tokenizer over ``corpus``'s words into
    ``out_dir`` (what tests and the offline demo load in place of a real T5). A random encoder still
    maps each word to its own direction, which is all the tiny DiT needs to read a caption."""
    import re

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    out = Path(out_dir)
    words = sorted({w for text in corpus for w in re.findall(r"\w+|[^\w\s]+", text.lower())})
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    # T5 ends every sequence with </s>: the empty caption is then one real token, never zero
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(out)
    torch.manual_seed(seed)
    conf = T5Config(vocab_size=len(vocab), d_model=d_model, d_kv=d_model // 4, d_ff=2 * d_model,
                    num_layers=layers, num_heads=4, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    from transformers.utils import logging as hf_logging

    # transformers draws a "Writing model shards" bar even for this one-file toy; in the demo's log it came
    # right after "dataset written to … shards/" and read as being about the dataset
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        T5EncoderModel(conf).save_pretrained(out)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return out
