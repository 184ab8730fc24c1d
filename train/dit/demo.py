"""The text-to-video half of ``reelforge demo``, and the quality number: attribute clips → latent shards
→ train the DiT on CPU for a few minutes → generate held-out compositions → score them with the oracle.

    result = run_t2v(Path("out/demo/t2v"), minutes=2.0)      # {"accuracy": …, "videos": […], …}

Everything runs offline: the text encoder is a small random T5 saved locally (``make_tiny_t5``), the
latents are 4× pooled pixels (``pixel:4``; a learned VAE plugs in by ``codec``).
"""
from __future__ import annotations

import html
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from reelforge.train.dit.attributes import build_attribute_latents, caption, held_out_prompts, oracle, seen_prompts
from reelforge.train.dit.codec import load_codec
from reelforge.train.dit.data import LatentDataConfig
from reelforge.train.dit.flow import FlowConfig
from reelforge.train.dit.sample import SamplerConfig
from reelforge.train.dit.task import DiTEvalConfig, DiTModelSection, DiTTask, DiTTrainConfig, load_dit
from reelforge.train.dit.text import TextEncoder, TextEncoderConfig, make_tiny_t5
from reelforge.train.launch import LaunchConfig, launch
from reelforge.train.trainer import TrainerConfig


def demo_config(latents: dict, text_dir: Path, steps: int, seed: int = 0) -> DiTTrainConfig:
    """The CPU demo's settings (configs/train/dit/demo.yaml mirrors them)."""
    return DiTTrainConfig(
        trainer=TrainerConfig(steps=steps, lr=1e-3, warmup_steps=min(20, steps // 5), schedule="cosine",
                              min_lr_ratio=0.1, weight_decay=0.0, ema_decay=0.99, grad_clip=1.0,
                              log_every=max(1, steps // 10), seed=seed, tensorboard=False),
        model=DiTModelSection(preset="DiT-T", patch=[2, 4, 4]),   # 4×4×4 = 64 tokens
        flow=FlowConfig(base_tokens=64),
        text=TextEncoderConfig(name=str(text_dir), max_length=32, device="cpu"),
        data=LatentDataConfig(path=str(latents["train"]), val_path=str(latents["val"]), batch_size=16,
                              caption_dropout=0.1),
        sampler=SamplerConfig(method="heun", steps=12, cfg_scale=4.0),
        eval=DiTEvalConfig(prompts=[], val_batches=2, fps=8.0),
        codec="pixel:4",
        launch=LaunchConfig(mode="local"),
    )


def seconds_per_step(cfg: DiTTrainConfig, repeats: int = 3) -> float:
    """Measured fwd + bwd + AdamW step time of this config's model on one batch (to turn minutes into steps)."""
    task = DiTTask(cfg)
    torch.manual_seed(0)
    model = task.build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = next(iter(task.build_loader(0, 1, 0)))
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        loss = task.losses(model, batch, 0)[0]["model"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def score(model, encoder, meta: dict, prompts: list[dict], seed: int) -> dict:
    """Generate each prompt with noise seed ``seed + i`` and score it with the oracle."""
    from reelforge.train.dit.generate import generate_videos

    videos = generate_videos(model, encoder, meta["codec"], [p["prompt"] for p in prompts],
                             meta["latent_shape"][1:], SamplerConfig(**meta["sampler"]), FlowConfig(**meta["flow"]),
                             seed=seed, fps=meta["fps"])
    rows = []
    for p, v in zip(prompts, videos):
        o = oracle(v)
        rows.append({**p, "seed": seed, "pred_color": o["color"], "pred_direction": o["direction"],
                     "color_ok": o["color"] == p["color"], "direction_ok": o["direction"] == p["direction"]})
    n = len(rows)
    return {"videos": videos, "rows": rows,
            "color_acc": sum(r["color_ok"] for r in rows) / n,
            "direction_acc": sum(r["direction_ok"] for r in rows) / n,
            "both_acc": sum(r["color_ok"] and r["direction_ok"] for r in rows) / n}


def run_t2v(out: Path, minutes: float = 2.0, seed: int = 0, steps: int = 0, sample_seeds: int = 1,
            write_videos: bool = True) -> dict:
    """Build, train, generate, score. ``steps`` > 0 overrides the minutes budget (the bench fixes steps so
    runs compare). Returns the scores and paths; writes ``out/t2v.json`` and ``out/index.html``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        # a busy machine: intra-op threads that wait on each other cost 10× here (measured), one does not
        torch.set_num_threads(1)
    out = Path(out)
    t_start = time.perf_counter()
    prompts = held_out_prompts()
    from reelforge.samples import attribute_specs
    corpus = [caption(s) for s in attribute_specs(0, False, 1)] + [p["prompt"] for p in prompts]
    text_dir = make_tiny_t5(out / "text_encoder", corpus, d_model=64)
    encoder = TextEncoder(TextEncoderConfig(name=str(text_dir), max_length=32, device="cpu"))
    latents = build_attribute_latents(out / "latents", load_codec("pixel:4"), encoder, seed=0)
    cfg = demo_config(latents, text_dir, steps=max(1, steps), seed=seed)
    if not steps:
        per_step = seconds_per_step(cfg)
        steps = max(20, int(minutes * 60 / per_step))
        cfg = replace(cfg, trainer=replace(cfg.trainer, steps=steps, log_every=max(1, steps // 10),
                                           warmup_steps=min(20, steps // 5)))
    print(f"text-to-video: {latents['train_clips']} training clips, {latents['val_clips']} held-out; "
          f"training DiT-T for {steps} steps", flush=True)
    t_train = time.perf_counter()
    shutil.rmtree(out / "dit", ignore_errors=True)   # a re-run of the demo trains afresh, not on old checkpoints
    launch(DiTTask, cfg, cfg.trainer, cfg.launch, cfg.ray, out / "dit")
    train_s = time.perf_counter() - t_train
    model, meta = load_dit(out / "dit" / "export")
    results = [score(model, encoder, meta, prompts, seed=1000 * k) for k in range(sample_seeds)]
    seen = [score(model, encoder, meta, seen_prompts(), seed=1000 * k + 500) for k in range(sample_seeds)]
    summary = {
        "steps": steps, "train_seconds": round(train_s, 1), "train_clips": latents["train_clips"],
        "prompts": len(prompts), "sample_seeds": sample_seeds, "training_seed": seed,
        "color_acc": float(np.mean([r["color_acc"] for r in results])),
        "direction_acc": float(np.mean([r["direction_acc"] for r in results])),
        "both_acc": float(np.mean([r["both_acc"] for r in results])),
        "seen_color_acc": float(np.mean([r["color_acc"] for r in seen])),
        "seen_direction_acc": float(np.mean([r["direction_acc"] for r in seen])),
        "seen_both_acc": float(np.mean([r["both_acc"] for r in seen])),
        "chance": {"color": 0.25, "direction": 0.25, "both": 1 / 16},
        "rows": [row for r in results for row in r["rows"]],
    }
    if write_videos:
        from reelforge.train.dit.generate import write_mp4

        videos = []
        for i, (row, v) in enumerate(zip(results[0]["rows"], results[0]["videos"])):
            path = write_mp4(np.repeat(np.repeat(v, 2, 1), 2, 2), out / "videos" / f"heldout_{i:02d}.mp4", meta["fps"])
            videos.append({**{k: row[k] for k in ("prompt", "pred_color", "pred_direction", "color_ok", "direction_ok")},
                           "path": str(path.relative_to(out))})
        summary["videos"] = videos
        (out / "index.html").write_text(_html(summary))
    summary["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "t2v.json").write_text(json.dumps({k: v for k, v in summary.items()}, indent=1) + "\n")
    return summary


def _html(s: dict) -> str:
    cells = "".join(
        f'<figure><video src="{html.escape(v["path"])}" autoplay loop muted playsinline width="128"></video>'
        f'<figcaption>{html.escape(v["prompt"])}<br>oracle: {v["pred_color"]} / {v["pred_direction"]} '
        f'{"✓" if v["color_ok"] and v["direction_ok"] else "✗"}</figcaption></figure>' for v in s.get("videos", []))
    return (f"<!doctype html><meta charset=utf-8><title>reelforge text-to-video demo</title>"
            f"<style>body{{font-family:sans-serif}}figure{{display:inline-block;width:200px;margin:6px;"
            f"font-size:12px;vertical-align:top}}</style><h1>Text-to-video on held-out compositions</h1>"
            f"<p>DiT-T trained {s['steps']} steps ({s['train_seconds']} s) on {s['train_clips']} attribute clips; "
            f"none of these (colour, direction) pairs was in training. Oracle accuracy: colour "
            f"{s['color_acc']:.0%} (chance 25%), direction {s['direction_acc']:.0%} (chance 25%), both "
            f"{s['both_acc']:.0%} (chance 6%).</p>{cells}")


def write_demo_index(out: Path) -> Path:
    """``OUT/index.html``: the demo's two halves side by side — the dataset's quality report and the
    generated videos (linked, relative paths, so the folder can be moved or served as is)."""
    out = Path(out)
    t2v = json.loads((out / "t2v" / "t2v.json").read_text()) if (out / "t2v" / "t2v.json").exists() else None
    parts = ['<!doctype html><meta charset=utf-8><title>reelforge demo</title>'
             '<style>body{font-family:sans-serif}figure{display:inline-block;width:150px;margin:4px;'
             'font-size:11px;vertical-align:top}</style><h1>reelforge demo</h1>',
             '<p><a href="dataset/report.html">Dataset quality report</a> (curation funnel, scores, contact sheet)</p>']
    if t2v:
        parts.append(f'<h2>Text-to-video</h2><p><a href="t2v/index.html">Generated videos</a>: DiT-T, '
                     f'{t2v["steps"]} steps on {t2v["train_clips"]} clips; on {t2v["prompts"]} held-out '
                     f'(colour, direction) prompts the oracle reads colour {t2v["color_acc"]:.0%} and direction '
                     f'{t2v["direction_acc"]:.0%} right (chance 25% each).</p>')
        for v in t2v.get("videos", []):
            parts.append(f'<figure><video src="t2v/{html.escape(v["path"])}" autoplay loop muted playsinline '
                         f'width="128"></video><figcaption>{html.escape(v["prompt"])}</figcaption></figure>')
    path = out / "index.html"
    path.write_text("".join(parts))
    return path
