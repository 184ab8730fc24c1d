"""Captioning through any OpenAI-compatible chat-completions endpoint (vLLM, SGLang, ``recaption.serve``).

Each clip is one request: the template's system text, then a user turn with the frames as base64 JPEG
data URLs followed by the prompt. Requests run ``concurrency`` at a time (the server batches them);
each has a timeout and is retried with exponential backoff on connection errors, timeouts, 429 and 5xx.
A request that still fails comes back as a ``Generated`` with ``error`` set, so the clip is recorded as
failed with that reason and the job goes on. Standard library only (``urllib``).
"""
from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from reelforge.recaption.captioner import Clip, Generated, GenerationSettings
from reelforge.recaption.templates import PromptTemplate


@dataclass
class OpenAIConfig:
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"   # the name the server serves the model under
    api_key_env: str = "OPENAI_API_KEY"           # read from the environment; never stored in configs
    concurrency: int = 16
    timeout_s: float = 120.0
    retries: int = 3
    backoff_s: float = 1.0
    jpeg_quality: int = 90

    def __post_init__(self):
        if self.concurrency < 1 or self.retries < 0 or self.timeout_s <= 0:
            raise ValueError("openai: concurrency >= 1, retries >= 0 and timeout_s > 0 required")


def frame_data_url(frame: np.ndarray, quality: int = 90) -> str:
    ok, jpg = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encode failed")
    return "data:image/jpeg;base64," + base64.b64encode(jpg.tobytes()).decode()


class _Retryable(Exception):
    pass


class OpenAICaptioner:
    """Same ``generate(clips, settings)`` contract as ``Captioner``, over HTTP."""

    max_batch = 1 << 30  # the whole chunk at once: concurrency, not batches, bounds the requests in flight

    def __init__(self, cfg: OpenAIConfig, template: PromptTemplate, generation: GenerationSettings,
                 retry: GenerationSettings):
        self.cfg, self.template = cfg, template
        self.generation, self.retry = generation, retry
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.api_key = os.environ.get(cfg.api_key_env, "")

    def request_body(self, clip: Clip, settings: GenerationSettings) -> dict:
        images = [{"type": "image_url", "image_url": {"url": frame_data_url(f, self.cfg.jpeg_quality)}}
                  for f in clip.frames]
        body = {"model": self.cfg.model, "messages": self.template.messages(images),
                "max_tokens": settings.max_new_tokens,
                "temperature": settings.temperature if settings.do_sample else 0.0,
                "top_p": settings.top_p if settings.do_sample else 1.0,
                # vLLM/SGLang extensions; servers that do not know them ignore them
                "repetition_penalty": settings.repetition_penalty, "fps": clip.fps}
        if settings.min_new_tokens:
            body["min_tokens"] = settings.min_new_tokens
        return body

    def _post(self, body: bytes) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            if exc.code == 429 or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code}: {detail}") from exc
            raise ValueError(f"HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc

    def _one(self, clip: Clip, settings: GenerationSettings) -> Generated:
        try:
            body = json.dumps(self.request_body(clip, settings)).encode()
        except ValueError as exc:
            return Generated("", 0, error=f"request: {exc}")
        last = ""
        for attempt in range(self.cfg.retries + 1):
            try:
                out = self._post(body)
                text = out["choices"][0]["message"]["content"] or ""
                return Generated(text, int((out.get("usage") or {}).get("completion_tokens") or 0))
            except _Retryable as exc:
                last = str(exc)
                if attempt < self.cfg.retries:
                    time.sleep(self.cfg.backoff_s * 2 ** attempt)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                return Generated("", 0, error=f"server: {exc}"[:300])
        return Generated("", 0, error=f"server unreachable after {self.cfg.retries + 1} tries: {last}"[:300])

    def generate(self, clips: list[Clip], settings: GenerationSettings | None = None) -> list[Generated]:
        settings = settings or self.generation
        with ThreadPoolExecutor(max_workers=min(self.cfg.concurrency, max(1, len(clips)))) as pool:
            return list(pool.map(lambda c: self._one(c, settings), clips))

    def describe(self) -> dict:
        return {"model": self.cfg.model, "endpoint": self.cfg.base_url}
