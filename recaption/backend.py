"""Which captioner runs (local transformers model or an OpenAI-compatible endpoint), and the one call the
job makes on it: a batch of clips in, judged captions (with one retry) out."""
from __future__ import annotations

from reelforge.recaption.captioner import CaptionerConfig, Clip
from reelforge.recaption.openai_backend import OpenAIConfig
from reelforge.recaption.postprocess import CaptionResult, caption_with_retry
from reelforge.recaption.templates import PromptTemplate


def make_backend(kind: str, captioner: CaptionerConfig, openai: OpenAIConfig, template: PromptTemplate):
    """A loaded backend with ``generate(clips, settings)`` and ``describe()``."""
    if kind == "transformers":
        from reelforge.recaption.captioner import Captioner
        return Captioner(captioner, template)
    if kind == "openai":
        from reelforge.recaption.openai_backend import OpenAICaptioner
        return OpenAICaptioner(openai, template, captioner.generation, captioner.retry)
    raise ValueError(f"unknown captioning backend {kind!r} (transformers or openai)")


def caption_clips(backend, clips: list[Clip], cfg: CaptionerConfig, min_words: int = 3) -> list[CaptionResult]:
    """Captions for ``clips`` in batches of ``cfg.batch_size``; unusable ones retried once (see postprocess)."""
    size = getattr(backend, "max_batch", None) or cfg.batch_size  # an endpoint takes all, `concurrency` at a time
    out: list[CaptionResult] = []
    for i in range(0, len(clips), size):
        out += caption_with_retry(backend.generate, clips[i:i + size], cfg.generation,
                                  cfg.retry if cfg.retry_failed else None, min_words)
    return out
