"""A small OpenAI-compatible server around the local ``Captioner`` (``reelforge caption-serve``).

``POST /v1/chat/completions`` takes the chat format the OpenAI backend sends (and vLLM accepts): text
parts and ``image_url`` parts with base64 data URLs. The images of one request are the frames of one
clip (fed as native video when the model takes video). ``GET /v1/models`` lists the one model.
Requests that arrive together are batched: a worker thread takes up to ``batch_size`` waiting requests
with the same generation settings and runs one ``generate``. Standard library only; bound to 127.0.0.1
unless told otherwise. For production throughput use vLLM or SGLang; this serves tests, a laptop, and
one endpoint shared by several jobs.
"""
from __future__ import annotations

import base64
import json
import queue
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from reelforge.recaption.captioner import Captioner, Clip, GenerationSettings
from reelforge.recaption.frames import fit_pixels


def decode_data_url(url: str) -> np.ndarray:
    """``data:image/...;base64,...`` -> (H, W, 3) uint8 RGB. Remote URLs are refused (no fetching here)."""
    if not url.startswith("data:") or ";base64," not in url:
        raise ValueError("only base64 data URLs are accepted")
    raw = base64.b64decode(url.split(";base64,", 1)[1], validate=False)
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("undecodable image")
    return img[:, :, ::-1]


def parse_request(body: dict, max_pixels: int) -> tuple[list[dict], np.ndarray | None, GenerationSettings, float]:
    """(chat messages with one media placeholder, frames (T, H, W, 3) or None, settings, fps)."""
    messages, frames = [], []
    for m in body.get("messages") or []:
        content = m.get("content")
        if isinstance(content, str):
            messages.append({"role": m["role"], "content": [{"type": "text", "text": content}]})
            continue
        parts, placed = [], False
        for part in content or []:
            if part.get("type") == "image_url":
                url = part["image_url"]["url"] if isinstance(part.get("image_url"), dict) else part.get("image_url")
                frames.append(decode_data_url(url))
                if not placed:
                    parts.append({"type": "media"})
                    placed = True
            elif part.get("type") == "text":
                parts.append({"type": "text", "text": part.get("text", "")})
        messages.append({"role": m["role"], "content": parts})
    if not messages:
        raise ValueError("no messages")
    video = None
    if frames:
        h, w = fit_pixels(*frames[0].shape[:2], max_pixels)  # frames of one clip share one size
        video = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    temperature = float(body.get("temperature", 0.0) or 0.0)
    max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 256)
    min_tokens = min(int(body.get("min_tokens") or 0), max_tokens)
    settings = GenerationSettings(max_new_tokens=max_tokens, min_new_tokens=min_tokens,
                                  do_sample=temperature > 0, temperature=temperature or 1.0,
                                  top_p=float(body.get("top_p", 1.0) or 1.0),
                                  repetition_penalty=float(body.get("repetition_penalty", 1.0) or 1.0))
    return messages, video, settings, float(body.get("fps") or 2.0)


class _Job:
    def __init__(self, prompt: str, clip: Clip, settings: GenerationSettings):
        self.prompt, self.clip, self.settings = prompt, clip, settings
        self.done = threading.Event()
        self.result = None
        self.error: str | None = None


class CaptionServer:
    """Owns the captioner and a batching worker; ``start()`` serves in a thread, ``stop()`` ends it."""

    def __init__(self, captioner: Captioner, host: str = "127.0.0.1", port: int = 0, model_name: str | None = None,
                 max_pixels: int = 448 * 448, batch_wait_s: float = 0.02):
        self.captioner, self.model_name = captioner, model_name or captioner.cfg.model
        self.max_pixels, self.batch_wait_s = max_pixels, batch_wait_s
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._stop = threading.Event()
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "CaptionServer":
        for target in (self.httpd.serve_forever, self._work):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for t in self._threads:
            t.join(timeout=10)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            time.sleep(self.batch_wait_s)  # let requests sent together arrive, then batch them
            batch, rest = [first], []
            while len(batch) < self.captioner.cfg.batch_size:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                same = job.settings == first.settings and (job.clip.frames is None) == (first.clip.frames is None)
                (batch if same else rest).append(job)
            for job in rest:
                self._jobs.put(job)
            try:
                outs = self.captioner.generate([j.clip for j in batch], first.settings,
                                               prompts=[j.prompt for j in batch])
                for job, out in zip(batch, outs):
                    job.result = out
            except Exception as exc:  # a bad batch answers its requests with the error; the server lives on
                for job in batch:
                    job.error = f"{type(exc).__name__}: {exc}"[:500]
            for job in batch:
                job.done.set()

    def complete(self, body: dict) -> dict:
        messages, frames, settings, fps = parse_request(body, self.max_pixels)
        if frames is None:
            raise ValueError("a captioning request needs at least one image_url part")
        cap = self.captioner
        media = [{"type": "video"}] if cap.use_video else [{"type": "image"}] * len(frames)
        for m in messages:  # the media placeholder becomes what this model's chat template expects
            m["content"] = [p for part in m["content"] for p in (media if part["type"] == "media" else [part])]
        prompt = cap.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        job = _Job(prompt, Clip("request", frames, fps), settings)
        self._jobs.put(job)
        job.done.wait()
        if job.error:
            raise RuntimeError(job.error)
        out = job.result
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": self.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text},
                             "finish_reason": "length" if out.tokens >= settings.max_new_tokens else "stop"}],
                "usage": {"completion_tokens": out.tokens}}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: one line per request would drown the job's output
                pass

            def _send(self, code: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": server.model_name, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                    self._send(200, server.complete(body))
                except (ValueError, KeyError, TypeError) as exc:
                    self._send(400, {"error": {"message": str(exc)[:500], "type": "invalid_request_error"}})
                except Exception as exc:
                    self._send(500, {"error": {"message": f"{type(exc).__name__}: {exc}"[:500]}})

        return Handler
