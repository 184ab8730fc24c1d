"""The VAE's inference weights: ``model.safetensors`` + ``config.json`` (the ``VAEConfig`` fields and
``_class_name: ReelforgeVideoVAE``), loadable without the trainer (``load_exported``, or
``interface.load_vae`` which detects the class)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from reelforge.train.vae.model import VAEConfig, VideoVAE


def save_exported(vae: VideoVAE, out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in vae.state_dict().items()}
    save_file(state, out_dir / "model.safetensors", metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(vae.config_dict(), indent=2))
    return out_dir


def load_exported(path: str | Path) -> VideoVAE:
    path = Path(path)
    raw = json.loads((path / "config.json").read_text())
    if raw.pop("_class_name", None) != "ReelforgeVideoVAE":
        raise ValueError(f"{path}/config.json is not a reelforge VAE export")
    known = {f.name for f in dataclasses.fields(VAEConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}/config.json has unknown VAE config keys {unknown}")
    vae = VideoVAE(VAEConfig(**raw))
    vae.load_state_dict(load_file(path / "model.safetensors"))
    return vae


def calibrate_export(path: str | Path, clips, batch_size: int = 8) -> tuple[float, float]:
    """Set an export's ``shift_factor``/``scaling_factor`` so the posterior means of ``clips``
    ((N, 3, T, H, W) in [-1, 1]) become zero-mean, unit-variance after ``(z - shift) * scale`` — the
    scale a DiT's flow matching assumes (Stable Diffusion fixed its 0.18215 the same way, from data).
    Rewrites ``config.json``; returns (shift, scale)."""
    import torch

    path = Path(path)
    vae = load_exported(path).eval()
    with torch.no_grad():
        z = torch.cat([vae.encode(clips[i:i + batch_size].float()).mean for i in range(0, len(clips), batch_size)])
    shift, scale = float(z.mean()), float(1.0 / z.std().clamp_min(1e-6))
    raw = json.loads((path / "config.json").read_text())
    raw.update(shift_factor=shift, scaling_factor=scale)
    (path / "config.json").write_text(json.dumps(raw, indent=2))
    return shift, scale
