"""The captioner: a vision-language model on transformers, loaded once, generating for a batch of clips.

Any image-text-to-text model loads by hub id or local path through ``AutoProcessor`` +
``AutoModelForImageTextToText``. Clips go in as native video where the processor has a video processor
(Qwen2-VL, Qwen2.5-VL: frames + their sampling rate, so the model's temporal position ids match clip
time), else as a run of images. Generation is batched with left padding (decoder-only models continue
from the right end of every row); bf16 and SDPA on a GPU, fp32 on CPU.

``model: random:<preset>`` builds a random-weight Qwen2.5-VL of ``recaption.random_model``'s presets
instead of loading weights: the benchmark's way to measure 7B throughput where no weights can be fetched.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from reelforge.recaption.templates import PromptTemplate


@dataclass
class GenerationSettings:
    max_new_tokens: int = 256
    min_new_tokens: int = 0        # > 0 only for benchmarks (random weights stop at random EOS tokens)
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.05

    def __post_init__(self):
        if self.max_new_tokens < 1 or self.min_new_tokens < 0 or self.min_new_tokens > self.max_new_tokens:
            raise ValueError("generation: need 1 <= max_new_tokens and 0 <= min_new_tokens <= max_new_tokens")
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0:
            raise ValueError("generation: temperature > 0, 0 < top_p <= 1, repetition_penalty > 0 required")

    def hf_kwargs(self) -> dict:
        kw = dict(max_new_tokens=self.max_new_tokens, do_sample=self.do_sample,
                  repetition_penalty=self.repetition_penalty)
        if self.min_new_tokens:
            kw["min_new_tokens"] = self.min_new_tokens
        if self.do_sample:
            kw.update(temperature=self.temperature, top_p=self.top_p)
        return kw


@dataclass
class CaptionerConfig:
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"   # hub id, local path, or random:<preset> (benchmarks)
    revision: str = ""
    device: str = "auto"            # auto: cuda when present, else cpu
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"   # auto: bf16 on GPU, fp32 on CPU
    attn_implementation: str = "sdpa"
    video_input: Literal["auto", "video", "images"] = "auto"   # auto: native video when the processor has it
    batch_size: int = 8             # clips per generate call
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    retry_failed: bool = True       # retry an unusable caption (empty, looping, refusal) once with `retry`
    # the one retry samples instead of decoding greedily
    retry: GenerationSettings = field(default_factory=lambda: GenerationSettings(
        do_sample=True, temperature=0.8, top_p=0.95, repetition_penalty=1.2))

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"captioner: batch_size must be >= 1, got {self.batch_size}")


@dataclass
class Clip:
    """One clip's frames as the captioner takes them."""
    clip_id: str
    frames: np.ndarray      # (T, H, W, 3) uint8 RGB
    fps: float              # sampled frames per second of clip time


@dataclass
class Generated:
    text: str
    tokens: int             # generated tokens (EOS included, padding not)
    error: str | None = None


def resolve_device(device: str) -> str:
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str):
    import torch
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def check_model_source(model: str, revision: str = "", key: str = "recaption.captioner.model") -> None:
    """Raise ``ConfigError`` (one line, naming ``key``) when ``model`` is neither a local folder, nor in the hub
    cache, nor fetchable from the hub. Without it a machine with no hub access (the README's default model on
    an offline box) had every caption actor retry the hub for minutes, then die in a traceback. Call it
    where the model will load: a cluster's workers may see folders and caches the driver does not."""
    import os

    from reelforge.config import ConfigError

    if model.startswith("random:") or os.path.isdir(os.path.expanduser(model)):
        return
    hint = f"download it where the captioning runs and set {key}=/path/to/model"
    if model.startswith(("/", ".", "~")) or model.count("/") > 1:
        raise ConfigError(f"{key}: {model} is not a folder; {hint}")
    import huggingface_hub as hub

    if isinstance(hub.try_to_load_from_cache(model, "config.json", revision=revision or None), str):
        return
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ConfigError(f"{key}: {model} is not a local folder nor in the hub cache, and HF_HUB_OFFLINE is set; {hint}")
    try:
        hub.model_info(model, revision=revision or None, timeout=15)  # one request, no retries
    except Exception as exc:  # noqa: BLE001 (offline, unknown repo, gated: the hub's own words)
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(f"{key}: {model} is not a local folder nor in the hub cache, and the hub cannot give it "
                         f"({type(exc).__name__}: {msg}); {hint}") from None


class Captioner:
    """Loads the model and processor once (``__init__``); ``generate`` captions a batch of clips."""

    def __init__(self, cfg: CaptionerConfig, template: PromptTemplate):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.cfg, self.template = cfg, template
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        t0 = time.time()
        if cfg.model.startswith("random:"):
            from reelforge.recaption.random_model import build_vlm
            self.model, self.processor = build_vlm(cfg.model.split(":", 1)[1], dtype=self.dtype, device=self.device)
        else:
            kw = {"revision": cfg.revision} if cfg.revision else {}
            self.processor = AutoProcessor.from_pretrained(cfg.model, **kw)
            self.model = AutoModelForImageTextToText.from_pretrained(
                cfg.model, dtype=self.dtype, attn_implementation=cfg.attn_implementation, **kw).to(self.device)
        self.model.eval()
        self.load_s = time.time() - t0
        self.processor.tokenizer.padding_side = "left"  # generation continues every row from its right end
        has_video = getattr(self.processor, "video_processor", None) is not None
        self.use_video = cfg.video_input == "video" or (cfg.video_input == "auto" and has_video)
        if self.use_video and not has_video:
            raise ValueError(f"{cfg.model}: video_input=video but the processor has no video processor")
        self.eos_ids = self._eos_ids()
        self._torch = torch

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.processor.tokenizer.eos_token_id is not None:
            ids.add(self.processor.tokenizer.eos_token_id)
        return ids

    def prompt(self, num_frames: int, template: PromptTemplate | None = None) -> str:
        media = [{"type": "video"}] if self.use_video else [{"type": "image"}] * num_frames
        return self.processor.apply_chat_template((template or self.template).messages(media),
                                                  add_generation_prompt=True, tokenize=False)

    def generate(self, clips: list[Clip], settings: GenerationSettings | None = None,
                 prompts: list[str] | None = None) -> list[Generated]:
        """Captions for ``clips`` in one batched ``generate`` (raw model text, not post-processed).
        ``prompts`` (chat-formatted) replace the template's, e.g. for requests served over HTTP."""
        if not clips:
            return []
        settings = settings or self.cfg.generation
        prompts = prompts or [self.prompt(len(c.frames)) for c in clips]
        if self.use_video:
            inputs = self.processor(text=prompts, videos=[c.frames for c in clips], padding=True,
                                    return_tensors="pt",
                                    video_metadata=[{"fps": c.fps, "total_num_frames": len(c.frames)} for c in clips])
        else:
            inputs = self.processor(text=prompts, images=[list(c.frames) for c in clips], padding=True,
                                    return_tensors="pt")
        inputs = inputs.to(self.device)
        for k, v in inputs.items():  # pixel values follow the model's dtype (bf16 on GPU)
            if self._torch.is_floating_point(v):
                inputs[k] = v.to(self.dtype)
        with self._torch.inference_mode():
            out = self.model.generate(**inputs, **settings.hf_kwargs())
        new = out[:, inputs["input_ids"].shape[1]:].cpu()  # (B, new tokens)
        texts = self.processor.batch_decode(new, skip_special_tokens=True)
        return [Generated(text=t, tokens=self._count(row)) for t, row in zip(texts, new.tolist())]

    def _count(self, ids: list[int]) -> int:
        for i, t in enumerate(ids):
            if t in self.eos_ids:
                return i + 1
        return len(ids)

    def describe(self) -> dict:
        """What a caption row records about the model."""
        return {"model": self.cfg.model, "revision": self.cfg.revision or None, "dtype": str(self.dtype),
                "video_input": self.use_video, "device": self.device, "load_s": round(self.load_s, 2)}
