"""``reelforge train vae CONFIG``: load the config, write it next to the run, launch the trainer."""
from __future__ import annotations

from pathlib import Path

import yaml

from reelforge.config import load_config, to_dict


def train_vae(config_path: str, overrides: list[str]) -> int:
    from reelforge.train.launch import launch
    from reelforge.train.vae.task import VAETrainConfig, make_vae_task

    cfg = load_config(VAETrainConfig, config_path, overrides)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    (out_dir / "config.yaml").write_text(resolved)
    metrics = launch(make_vae_task, cfg, cfg.trainer, cfg.launch, cfg.ray, out_dir, config_yaml=resolved)
    print(f"done: {out_dir} (weights in {out_dir / 'export'}); last metrics: "
          + " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    return 0
