"""Prompt upsampling: a text LLM rewrites a user's short prompt into a dense caption in the style of the
training captions (the DALL·E 3 / Sora recipe: a model trained on dense captions wants dense prompts).

    from reelforge.recaption import UpsampleConfig, upsample
    dense = upsample("a cat on a skateboard", UpsampleConfig(model="Qwen/Qwen2.5-7B-Instruct"))

The model (any ``AutoModelForCausalLM`` with a chat template, by hub id or local path) loads once per
process and config. Output is cleaned like captions; an unusable rewrite (empty, looping, refusing) is
retried once with sampling, and if that fails too the user's prompt is returned unchanged (generation
must not fail because the rewriter did), with a warning.

For a command line: ``add_upsample_arguments(parser)`` adds ``--upsample`` / ``--upsample-model`` /
``--upsample-set``; ``upsample_from_args(args, prompts)`` applies them (prompts unchanged without it).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache

from reelforge.recaption.captioner import GenerationSettings, resolve_device, resolve_dtype
from reelforge.recaption.postprocess import clean, failure_reason
from reelforge.recaption.templates import load_template

log = logging.getLogger(__name__)


@dataclass
class UpsampleConfig:
    model: str = "Qwen/Qwen2.5-7B-Instruct"   # hub id or local path of a chat LLM
    template: str = "upsample-v1"              # configs/caption/templates/<id>.yaml; its prompt has {prompt}
    device: str = "auto"
    dtype: str = "auto"                         # bf16 on GPU, fp32 on CPU
    min_words: int = 8
    generation: GenerationSettings = field(default_factory=lambda: GenerationSettings(max_new_tokens=220))
    retry: GenerationSettings = field(default_factory=lambda: GenerationSettings(
        max_new_tokens=220, do_sample=True, temperature=0.8, top_p=0.95, repetition_penalty=1.2))


@lru_cache(maxsize=2)
def _load(model: str, device: str, dtype: str):
    import torch  # noqa: F401  (transformers needs it; imported here so the module stays light)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    dev = resolve_device(device)
    tok = AutoTokenizer.from_pretrained(model)
    tok.padding_side = "left"
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=resolve_dtype(dtype, dev)).to(dev).eval()
    return tok, lm, dev


def _generate(prompts: list[str], cfg: UpsampleConfig, settings: GenerationSettings) -> list[str]:
    import torch
    tok, lm, dev = _load(cfg.model, cfg.device, cfg.dtype)
    template = load_template(cfg.template)
    # plain-string contents: text-only chat templates (Qwen2.5, Llama 3) do not take content lists
    texts = [tok.apply_chat_template(([{"role": "system", "content": template.system}] if template.system else [])
                                     + [{"role": "user", "content": template.prompt.format(prompt=p)}],
                                     add_generation_prompt=True, tokenize=False) for p in prompts]
    inputs = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(dev)
    with torch.inference_mode():
        out = lm.generate(**inputs, **settings.hf_kwargs())
    return tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def upsample(prompts: str | list[str], cfg: UpsampleConfig | None = None) -> str | list[str]:
    """Dense caption(s) for short prompt(s); a prompt whose rewrite fails twice comes back unchanged."""
    cfg = cfg or UpsampleConfig()
    single = isinstance(prompts, str)
    items = [prompts] if single else list(prompts)
    out: list[str | None] = [None] * len(items)
    todo = list(range(len(items)))
    for settings in (cfg.generation, cfg.retry):
        if not todo:
            break
        texts = _generate([items[i] for i in todo], cfg, settings)
        again = []
        for i, text in zip(todo, texts):
            text = clean(text)
            if failure_reason(text, cfg.min_words) is None:
                out[i] = text
            else:
                again.append(i)
        todo = again
    for i in todo:
        log.warning("prompt upsampling failed twice for %r: using the prompt as given", items[i][:80])
        out[i] = items[i]
    return out[0] if single else out


from reelforge.recaption.cli import add_upsample_arguments  # noqa: E402,F401  (light to import: parsers use it)


def upsample_from_args(args, prompts: list[str]) -> list[str]:
    """``prompts`` upsampled when ``--upsample`` was given, else unchanged."""
    if not getattr(args, "upsample", False):
        return list(prompts)
    from reelforge.config import load_config
    overrides = list(args.upsample_set or []) + ([f"model={args.upsample_model}"] if args.upsample_model else [])
    return upsample(list(prompts), load_config(UpsampleConfig, None, overrides))
