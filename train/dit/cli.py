"""CLI entry points of the DiT: ``reelforge generate`` and the ``dit`` branch of ``reelforge train``.
Nothing heavy is imported at module level (``reelforge --help`` stays fast)."""
from __future__ import annotations


def add_parser(sub) -> None:
    """Register ``reelforge generate``."""
    g = sub.add_parser("generate", help="text → video with a trained DiT (mp4 out)")
    g.add_argument("--checkpoint", required=True, help="a DiT export folder (dit.json + model.safetensors) or its run dir")
    g.add_argument("--prompt", action="append", required=True, help="repeatable: one video per prompt")
    g.add_argument("--out", required=True, help="folder for video_NNN.mp4 and prompts.json")
    g.add_argument("--seed", type=int, default=0, help="prompt i uses noise seed SEED + i")
    g.add_argument("--steps", type=int, default=0, help="sampler steps (0: the exported default)")
    g.add_argument("--method", choices=["euler", "heun"], default=None, help="sampler (default: the exported one)")
    g.add_argument("--cfg-scale", type=float, default=None, dest="cfg_scale",
                   help="classifier-free guidance scale (default: the exported one)")
    g.add_argument("--frames", type=int, default=0, help="latent frames (0: the training bucket's)")
    g.add_argument("--size", default="", help="HxW in pixels (default: the training bucket's)")
    from reelforge.recaption.cli import add_upsample_arguments  # light: no numpy, no torch

    add_upsample_arguments(g)           # --upsample, --upsample-model, --upsample-set (issue 13)
    g.set_defaults(func=_generate)


def _generate(args) -> int:
    from reelforge.train.dit.generate import cmd_generate

    return cmd_generate(args)


def train_dit(config_path: str, overrides: list[str]) -> int:
    """``reelforge train dit CONFIG [--set k=v …]`` (registered in train/cli.py's TRAINERS): the config
    is ``DiTTrainConfig``; the run writes under its ``out_dir``."""
    from pathlib import Path

    import yaml

    from reelforge.config import load_config, to_dict
    from reelforge.train.dit.task import DiTTask, DiTTrainConfig
    from reelforge.train.launch import launch

    cfg = load_config(DiTTrainConfig, config_path, overrides)
    config_yaml = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(config_yaml)
    metrics = launch(DiTTask, cfg, cfg.trainer, cfg.launch, cfg.ray, out, config_yaml)
    print(f"done: {out} (weights in {out / 'export'}); last metrics: "
          + " ".join(f"{k}={v:.4g}" for k, v in (metrics or {}).items() if isinstance(v, float)))
    return 0
