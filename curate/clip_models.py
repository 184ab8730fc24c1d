"""open_clip loading shared by the aesthetic, caption-match and dedup code.

Every model goes through the path users take: ``open_clip.create_model_and_transforms(name,
pretrained=<tag or local checkpoint>)``. A custom architecture (or the tiny random model the tests and
the offline demo use) is a model-config JSON registered with ``open_clip.add_model_config`` and then
named like any built-in. Models load once per process (one Ray actor) and are shared by every stage in
it, keyed by (model, pretrained, device).

torch, PIL and open_clip are imported where a model is built or run, not with this module: the stages
import it for their resource planning, and a build without CLIP weights must not pay for torch.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

# A ~3.5 M-parameter CLIP (almost all of it the 49k-token text embedding): small enough to build,
# save and load in a test in well under a second, and the same code path as ViT-L-14.
TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

_CACHE: dict[tuple[str, str, str], "ClipModel"] = {}
_LOCK = threading.Lock()


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when this process sees a GPU, else ``"cpu"``; anything else passes through.

    Called where the model loads (the stage's ``__init__``, on the Ray worker), never on the driver: a
    CPU-only head node says nothing about the workers. On Ray a worker sees only the GPUs Ray gave it
    (``reelforge.cluster`` hides them from actors that asked for none), so ``auto`` means "the GPU this
    actor reserved through ``num_gpus``"."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{device}' requested but torch sees no CUDA device")
    return device


def gpus_to_reserve(device: str, num_gpus: float) -> float:
    """GPUs a model stage's actor asks Ray for, from its config alone (never from the driver's hardware):
    ``num_gpus`` as configured (a fraction shares one GPU between actors); an explicit ``cuda`` device
    asks for at least one, since it cannot run without one."""
    if num_gpus < 0:
        raise ValueError(f"num_gpus must be >= 0, got {num_gpus}")
    return max(num_gpus, 1.0) if device.startswith("cuda") else num_gpus


def register_model_config(path: str) -> str:
    """Register an open_clip model-config JSON; returns the model name it is known by (the file stem)."""
    import open_clip

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"open_clip model config not found: {p}")
    cfg = json.loads(p.read_text())
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in cfg]
    if missing:
        raise ValueError(f"{p}: not an open_clip model config (missing {missing})")
    open_clip.add_model_config(p)
    return p.stem


class ClipModel:
    """An open_clip model with its eval transform and tokenizer; encodes frames and texts to unit vectors."""

    def __init__(self, model: str, pretrained: str, device: str = "cpu", model_config: str = ""):
        import open_clip

        if model_config:
            registered = register_model_config(model_config)
            if registered != model:
                raise ValueError(f"model '{model}' does not match the registered config name '{registered}' "
                                 f"({model_config}); name the model after the JSON file's stem")
        if pretrained and not Path(pretrained).is_file() and "/" in pretrained:
            raise FileNotFoundError(f"CLIP checkpoint not found: {pretrained}")
        self.device = resolve_device(device)
        try:
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(
                model, pretrained=pretrained or None, device=self.device)
        except RuntimeError as exc:  # unknown tag offline, etc.: say which setting to change
            raise RuntimeError(f"could not load open_clip model '{model}' with pretrained='{pretrained}': "
                               f"{exc}") from exc
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        self.name = model

    def encode_images(self, frames: np.ndarray | list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB (or N arrays of any sizes) -> (N, D) float32, L2-normalised."""
        import torch
        from PIL import Image

        out = []
        with torch.inference_mode():
            for i in range(0, len(frames), batch_size):
                x = torch.stack([self.preprocess(Image.fromarray(f)) for f in frames[i:i + batch_size]])
                emb = self.model.encode_image(x.to(self.device))  # (B, D)
                out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)

    def encode_groups(self, groups: list[np.ndarray]) -> list[np.ndarray]:
        """Frames of several clips (each (K_i, H_i, W_i, 3), sizes may differ) in one batched pass ->
        per clip (K_i, D). Clips differ in size within a batch; preprocessing resizes each frame."""
        flat = [f for g in groups for f in g]
        emb = self.encode_images(flat)  # (sum K_i, D)
        return np.split(emb, np.cumsum([len(g) for g in groups])[:-1])

    def encode_texts(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """N strings -> (N, D) float32, L2-normalised."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                tokens = self.tokenizer(list(texts[i:i + batch_size])).to(self.device)  # (B, context_length)
                emb = self.model.encode_text(tokens)  # (B, D)
                out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
        return torch.cat(out).numpy()


def load_clip(model: str, pretrained: str, device: str = "cpu", model_config: str = "") -> ClipModel:
    """The process-wide shared :class:`ClipModel` for these settings (built on first use)."""
    key = (model, pretrained, resolve_device(device))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = ClipModel(model, pretrained, device=device, model_config=model_config)
        return _CACHE[key]


def save_random_clip(out_dir: str | Path, name: str = "reelforge-tiny-clip", seed: int = 0,
                     config: dict | None = None) -> tuple[Path, Path]:
    """Write a model-config JSON and a randomly initialised checkpoint for it; returns (config, checkpoint).

    For tests and offline demos: load it with ``model=<name>, model_config=<config>,
    pretrained=<checkpoint>``, the same calls a real checkpoint goes through.
    """
    import open_clip
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / f"{name}.json"
    cfg_path.write_text(json.dumps(config or TINY_CLIP_CONFIG, indent=1))
    register_model_config(str(cfg_path))
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    ckpt = out / f"{name}.pt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    return cfg_path, ckpt
