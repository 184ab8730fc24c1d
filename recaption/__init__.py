"""Recaptioning: a vision-language model writes dense, versioned captions for a dataset's clips.

    captioner.py       the transformers captioner (AutoProcessor + AutoModelForImageTextToText, batched)
    openai_backend.py  the same over any OpenAI-compatible endpoint; serve.py serves the local one
    frames.py          N frames per clip, decoded on CPU workers
    templates.py       versioned prompt templates (configs/caption/templates/)
    postprocess.py     cleaning, failure reasons, the one retry
    runner.py          the only module touching Ray: decode tasks ahead of a model actor pool
    job.py             caption_dataset: one caption version for a dataset, resumable
    build.py           the build's caption step (kept clips, then caption_match)
    prompt_upsample.py prompt upsampling with a text LLM (for generation)
    random_model.py    random-weight models of the real architectures (tests, benchmarks)

The captions live in the dataset's caption store (``shards/captions.py``, ``captions.parquet``).
Light to import: the heavy modules load inside the functions below.
"""
from __future__ import annotations


def caption_dataset(*args, **kwargs):
    from reelforge.recaption.job import caption_dataset as run
    return run(*args, **kwargs)


def upsample(*args, **kwargs):
    from reelforge.recaption.prompt_upsample import upsample as run
    return run(*args, **kwargs)


def __getattr__(name):
    if name in ("RecaptionConfig", "CaptionJobConfig"):
        from reelforge.recaption import job
        return getattr(job, name)
    if name == "UpsampleConfig":
        from reelforge.recaption.prompt_upsample import UpsampleConfig
        return UpsampleConfig
    raise AttributeError(name)
