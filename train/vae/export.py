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
