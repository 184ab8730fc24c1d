"""The text-to-video half of ``reelforge demo``, and the quality number: attribute clips → latent shards
→ train the DiT on CPU for a few minutes → generate held-out compositions → score them with the oracle.

    result = run_t2v(Path("out/demo/t2v"), minutes=2.0)      # {"accuracy": …, "videos": […], …}

Everything runs offline: the text encoder is a small random T5 saved locally (``make_tiny_t5``). The
latent space is ``codec``: 4× pooled pixels (``pixel:4``, 8-frame clips, 2×4×4 patches; the default) or
a trained VAE export (``train_demo_vae``: the tiny VAE fitted on the attribute training clips — or on a
built dataset — for a few minutes, its latent scale calibrated on the attribute clips; 9-frame clips,
1×2×2 patches), ``reelforge demo --vae-minutes N``.
"""
from __future__ import annotations

import html
import json
import math
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from reelforge.configs import CONFIG_DIR
from reelforge.train.dit.attributes import (_attrs, build_attribute_latents, caption, held_out_prompts, oracle,
                                           seen_prompts)
from reelforge.train.dit.codec import load_codec
from reelforge.train.dit.data import LatentDataConfig
from reelforge.train.dit.flow import FlowConfig
from reelforge.train.dit.model import grid_of
from reelforge.train.dit.sample import SamplerConfig
from reelforge.train.dit.task import DiTEvalConfig, DiTModelSection, DiTTask, DiTTrainConfig, load_dit
from reelforge.train.dit.text import TextEncoder, TextEncoderConfig, make_tiny_t5
from reelforge.train.launch import LaunchConfig, launch
from reelforge.train.trainer import TrainerConfig


def default_patch(codec) -> list[int]:
    """Patches of ~16×16 pixels: 2×4×4 on 4×-pooled pixels (2 frames per token), 1×2×2 on a VAE's
    8×-downsampled latents (one latent frame — 4 video frames — per token)."""
    return [2, 4, 4] if codec.strides[0] == 1 else [1, 2, 2]


def clip_frames(codec) -> int:
    """8 frames for pixel codecs; 9 for a causal VAE (1 + 4k frames: 3 latent frames at 4×)."""
    if codec.strides[0] == 1:
        return 8
    if 8 % codec.strides[0]:
        raise ValueError(f"{codec.name}: temporal compression {codec.strides[0]} does not divide 8 frames")
    return 9


def demo_config(latents: dict, text_dir: Path, steps: int, seed: int = 0, codec: str = "pixel:4",
                patch=(2, 4, 4)) -> DiTTrainConfig:
    """The CPU demo's settings (configs/train/dit/demo.yaml mirrors them)."""
    tokens = math.prod(grid_of(tuple(latents["latent_shape"][1:]), list(patch)))
    return DiTTrainConfig(
        trainer=TrainerConfig(steps=steps, lr=1e-3, warmup_steps=min(20, steps // 5), schedule="cosine",
                              min_lr_ratio=0.1, weight_decay=0.0, ema_decay=0.99, grad_clip=1.0,
                              log_every=max(1, steps // 10), seed=seed, tensorboard=False),
        model=DiTModelSection(preset="DiT-T", patch=list(patch)),   # 64 tokens (pixel:4), 48 (VAE)
        flow=FlowConfig(base_tokens=tokens),
        text=TextEncoderConfig(name=str(text_dir), max_length=32, device="cpu"),
        data=LatentDataConfig(path=str(latents["train"]), val_path=str(latents["val"]), batch_size=16,
                              caption_dropout=0.1),
        sampler=SamplerConfig(method="heun", steps=12, cfg_scale=4.0),
        eval=DiTEvalConfig(prompts=[], val_batches=2, fps=8.0),
        codec=codec,
        launch=LaunchConfig(mode="local"),
    )


VAE_CONFIG = CONFIG_DIR / "train" / "vae" / "demo.yaml"  # package data: in a wheel too


def attribute_videos(frames: int, held_out: bool = False, limit: int = 0) -> torch.Tensor:
    """The attribute clips as (N, 3, T, H, W) float in [-1, 1] (``limit`` > 0: the first ``limit``)."""
    from reelforge.samples import attribute_specs, render_frames

    specs = attribute_specs(0, held_out=held_out, frames=frames)
    specs = specs[:limit] if limit else specs
    v = torch.from_numpy(np.stack([np.stack(list(render_frames(s))) for s in specs]))            # (N, T, H, W, 3)
    return v.permute(0, 4, 1, 2, 3).float() / 127.5 - 1


class AttributeClipLoader:
    """In-memory clips (N, 3, T, H, W) as VAE batches ``{"video": (B, T, 3, H, W)}``, shuffled per (seed,
    epoch), this rank's share only, every rank the same number of batches; ``state_dict`` is the exact
    position (the shard readers' contract, so checkpoints resume)."""

    def __init__(self, clips: torch.Tensor, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        self.clips, self.batch_size, self.rank, self.world_size, self.seed = clips, batch_size, rank, world_size, seed
        self.batches = len(clips) // (batch_size * world_size)
        if self.batches == 0:
            raise ValueError(f"{len(clips)} clips make no batch of {batch_size} on {world_size} rank(s)")
        self.epoch, self.position = 0, 0

    def __iter__(self):
        if self.position >= self.batches:
            self.epoch, self.position = self.epoch + 1, 0
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(len(self.clips), generator=g)
        mine = order[self.rank::self.world_size]
        while self.position < self.batches:
            idx = mine[self.position * self.batch_size:(self.position + 1) * self.batch_size]
            self.position += 1
            yield {"video": self.clips[idx].transpose(1, 2)}                                   # (B, T, 3, H, W)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


def make_attribute_vae_task(cfg):
    """The VAE task trained on the attribute training clips and evaluated on the held-out ones (the
    clips the DiT sees), instead of a shard dataset."""
    from reelforge.train.vae.task import VAETask

    class AttributeVAETask(VAETask):
        def build_loader(self, rank, world_size, seed):
            b = self.cfg.data.buckets.buckets[0]
            return AttributeClipLoader(attribute_videos(b.num_frames), b.batch_size, rank, world_size, seed)

        def eval_clips(self):
            if self._eval_clips is None:
                n = self.cfg.data.eval_clips
                held = attribute_videos(self.cfg.data.eval_frames, held_out=True) if n else torch.empty(0)
                self._eval_clips = list(held[::max(1, len(held) // max(1, n))][:n])
            return self._eval_clips

    return AttributeVAETask(cfg)


def train_demo_vae(out: Path, minutes: float = 1.0, steps: int = 0, dataset: Path | None = None,
                   overrides=()) -> dict:
    """Fit the tiny VAE (configs/train/vae/demo.yaml) for ``minutes`` of measured step time (or
    ``steps``) on the attribute training clips — or, with ``dataset``, on a built dataset's shards —
    then calibrate its latent scale on the attribute training clips (what the DiT will see). Returns
    {"export": folder, "data", "steps", "train_seconds", "shift", "scale", "attribute_psnr": PSNR of the
    held-out attribute clips through encode → decode, "oracle_on_reconstructions": {"color", "direction"}:
    how often the pixel oracle still reads those reconstructions right (the ceiling of the DiT's score)}."""
    from reelforge.config import load_config
    from reelforge.train.vae.evaluate import psnr
    from reelforge.train.vae.export import calibrate_export
    from reelforge.train.vae.task import VAETrainConfig, make_vae_task

    _one_thread_when_busy()
    out = Path(out)
    sets = [f"out_dir={out}", *([f"data.dataset={dataset}"] if dataset else []), *overrides]
    cfg = load_config(VAETrainConfig, str(VAE_CONFIG), sets)
    if not steps:
        steps = max(10, int(minutes * 60 / _seconds_per_vae_step(cfg)))
    cfg = replace(cfg, trainer=replace(cfg.trainer, steps=steps, log_every=max(1, steps // 5),
                                       warmup_steps=min(cfg.trainer.warmup_steps, steps // 5)))
    data = str(dataset) if dataset else "the attribute training clips"
    print(f"VAE: training the tiny VAE ({cfg.vae.latent_channels} latent channels) on {data} for {steps} steps",
          flush=True)
    shutil.rmtree(out, ignore_errors=True)            # a re-run trains afresh, not on old checkpoints
    t0 = time.perf_counter()
    launch(make_vae_task if dataset else make_attribute_vae_task, cfg, cfg.trainer, cfg.launch, cfg.ray, out)
    train_s = time.perf_counter() - t0
    frames = cfg.data.buckets.buckets[0].num_frames
    shift, scale = calibrate_export(out / "export", attribute_videos(frames, limit=64))
    codec = load_codec(str(out / "export"))
    held = attribute_videos(frames, held_out=True)
    video = ((held.permute(0, 2, 3, 4, 1) + 1) * 127.5).round().to(torch.uint8)                   # (N, T, H, W, 3)
    recon = codec.decode(codec.encode(video))                                                      # (N, T, H, W, 3)
    from reelforge.samples import attribute_specs

    truth = [dict(zip(("color", "direction"), _attrs(s))) for s in attribute_specs(0, held_out=True, frames=frames)]
    reads = [oracle(v) for v in recon.numpy()]
    return {"export": str((out / "export").resolve()), "data": data, "steps": steps,
            "train_seconds": round(train_s, 1), "shift": shift, "scale": scale,
            "attribute_psnr": round(float(psnr(held, recon.permute(0, 4, 1, 2, 3).float() / 127.5 - 1).mean()), 2),
            "oracle_on_reconstructions": {k: round(float(np.mean([r[k] == t[k] for r, t in zip(reads, truth)])), 3)
                                          for k in ("color", "direction")}}


def _seconds_per_vae_step(cfg) -> float:
    """Median fwd + bwd + AdamW time of the VAE config's model on one random batch of its first bucket."""
    from reelforge.train.vae.losses import vae_losses
    from reelforge.train.vae.task import VAETask

    task = VAETask(cfg)
    torch.manual_seed(0)
    model = task.build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b = cfg.data.buckets.buckets[0]
    x = torch.rand(b.batch_size, 3, b.num_frames, b.height, b.width) * 2 - 1
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        vae_losses(cfg.loss, model, x, 0, None)[0]["vae"].backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


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


def _one_thread_when_busy() -> None:
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        # a busy machine: intra-op threads that wait on each other cost 10× here (measured), one does not
        torch.set_num_threads(1)


def run_t2v(out: Path, minutes: float = 2.0, seed: int = 0, steps: int = 0, sample_seeds: int = 1,
            write_videos: bool = True, codec: str = "pixel:4", patch: list[int] | None = None,
            vae: dict | None = None) -> dict:
    """Build, train, generate, score. ``steps`` > 0 overrides the minutes budget (the bench fixes steps so
    runs compare). ``codec``: ``pixel:4`` or a VAE export folder; ``patch``: None = ``default_patch``;
    ``vae``: what ``train_demo_vae`` returned, recorded in the summary. Returns the scores and paths;
    writes ``out/t2v.json`` and ``out/index.html``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _one_thread_when_busy()
    out = Path(out)
    t_start = time.perf_counter()
    prompts = held_out_prompts()
    from reelforge.samples import attribute_specs
    corpus = [caption(s) for s in attribute_specs(0, False, 1)] + [p["prompt"] for p in prompts]
    text_dir = make_tiny_t5(out / "text_encoder", corpus, d_model=64)
    encoder = TextEncoder(TextEncoderConfig(name=str(text_dir), max_length=32, device="cpu"))
    latent_codec = load_codec(codec)
    patch = list(patch or default_patch(latent_codec))
    latents = build_attribute_latents(out / "latents", latent_codec, encoder, seed=0,
                                      frames=clip_frames(latent_codec))
    cfg = demo_config(latents, text_dir, steps=max(1, steps), seed=seed, codec=codec, patch=patch)
    if not steps:
        per_step = seconds_per_step(cfg)
        steps = max(20, int(minutes * 60 / per_step))
        cfg = replace(cfg, trainer=replace(cfg.trainer, steps=steps, log_every=max(1, steps // 10),
                                           warmup_steps=min(20, steps // 5)))
    print(f"text-to-video: {latents['train_clips']} training clips, {latents['val_clips']} held-out; "
          f"training DiT-T for {steps} steps on {codec} latents {latents['latent_shape']}, patch {patch}", flush=True)
    t_train = time.perf_counter()
    shutil.rmtree(out / "dit", ignore_errors=True)   # a re-run of the demo trains afresh, not on old checkpoints
    launch(DiTTask, cfg, cfg.trainer, cfg.launch, cfg.ray, out / "dit")
    train_s = time.perf_counter() - t_train
    model, meta = load_dit(out / "dit" / "export", "cuda" if torch.cuda.is_available() else "cpu")
    results = [score(model, encoder, meta, prompts, seed=1000 * k) for k in range(sample_seeds)]
    seen = [score(model, encoder, meta, seen_prompts(), seed=1000 * k + 500) for k in range(sample_seeds)]
    summary = {
        "steps": steps, "train_seconds": round(train_s, 1), "train_clips": latents["train_clips"],
        "codec": codec, "patch": patch, "latent_shape": latents["latent_shape"], "vae": vae,
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
            path = write_mp4(np.repeat(np.repeat(np.asarray(v), 2, 1), 2, 2), out / "videos" / f"heldout_{i:02d}.mp4", meta["fps"])
            videos.append({**{k: row[k] for k in ("prompt", "pred_color", "pred_direction", "color_ok", "direction_ok")},
                           "path": str(path.relative_to(out))})
        summary["videos"] = videos
        (out / "index.html").write_text(_html(summary))
    summary["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "t2v.json").write_text(json.dumps({k: v for k, v in summary.items()}, indent=1) + "\n")
    return summary


def run_demo_t2v(out: Path, train_minutes: float = 1.5, vae_minutes: float = 0.0) -> dict:
    """``reelforge demo``'s second half on the dataset it built in ``out/dataset``: the tiny VAE fitted on
    it for ``vae_minutes`` (0: no VAE, 4×-pooled pixels as the latent space), the DiT on the attribute
    clips in that latent space for ``train_minutes``, generation and scoring, then ``out/index.html``."""
    out = Path(out)
    vae = train_demo_vae(out / "t2v" / "vae", minutes=vae_minutes) if vae_minutes > 0 else None
    t2v = run_t2v(out / "t2v", minutes=train_minutes, codec=vae["export"] if vae else "pixel:4", vae=vae)
    write_demo_index(out)
    link_from_report(out / "dataset", t2v)
    return t2v


def link_from_report(dataset: Path, t2v: dict) -> Path:
    """List the demo's pages in ``DATASET/links.json`` and re-render the dataset's report, which links
    them at its top (curate/report/page.py), so the report leads to the generated videos."""
    from reelforge.curate.report import write_report

    note = (f"{len(t2v.get('videos', []))} videos generated from held-out prompts; oracle accuracy colour "
            f"{t2v['color_acc']:.0%}, direction {t2v['direction_acc']:.0%} (chance 25% each)")
    pages = [{"title": "Text-to-video: generated videos", "href": "../t2v/index.html", "note": note},
             {"title": "The demo's overview", "href": "../index.html"}]
    (Path(dataset) / "links.json").write_text(json.dumps({"pages": pages}, indent=1) + "\n")
    return write_report(dataset)


def _html(s: dict) -> str:
    cells = "".join(
        f'<figure><video src="{html.escape(v["path"])}" autoplay loop muted playsinline width="128"></video>'
        f'<figcaption>{html.escape(v["prompt"])}<br>oracle: {v["pred_color"]} / {v["pred_direction"]} '
        f'{"✓" if v["color_ok"] and v["direction_ok"] else "✗"}</figcaption></figure>' for v in s.get("videos", []))
    return (f"<!doctype html><meta charset=utf-8><title>reelforge text-to-video demo</title>"
            f"<style>body{{font-family:sans-serif}}figure{{display:inline-block;width:200px;margin:6px;"
            f"font-size:12px;vertical-align:top}}</style><h1>Text-to-video on held-out compositions</h1>"
            f"<p><a href='../dataset/report.html'>The dataset's quality report</a> · <a href='../index.html'>"
            f"the demo's overview</a></p>"
            f"<p>DiT-T trained {s['steps']} steps ({s['train_seconds']} s) on {s['train_clips']} attribute clips "
            f"in {_latent_space(s)}; "
            f"none of these (colour, direction) pairs was in training. Oracle accuracy: colour "
            f"{s['color_acc']:.0%} (chance 25%), direction {s['direction_acc']:.0%} (chance 25%), both "
            f"{s['both_acc']:.0%} (chance 6%).</p>{cells}")


def _latent_space(s: dict) -> str:
    vae = s.get("vae")
    if not vae:
        return f"4×-pooled pixels ({s.get('codec', 'pixel:4')}, latents {s.get('latent_shape')})"
    return (f"the latents of the tiny VAE trained {vae['steps']} steps ({vae['train_seconds']} s) on the built "
            f"dataset (latents {s.get('latent_shape')}; it reconstructs the held-out attribute clips at "
            f"{vae['attribute_psnr']} dB PSNR)")


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
                     f'{t2v["steps"]} steps on {t2v["train_clips"]} clips in {html.escape(_latent_space(t2v))}; '
                     f'on {t2v["prompts"]} held-out '
                     f'(colour, direction) prompts the oracle reads colour {t2v["color_acc"]:.0%} and direction '
                     f'{t2v["direction_acc"]:.0%} right (chance 25% each).</p>')
        for v in t2v.get("videos", []):
            parts.append(f'<figure><video src="t2v/{html.escape(v["path"])}" autoplay loop muted playsinline '
                         f'width="128"></video><figcaption>{html.escape(v["prompt"])}</figcaption></figure>')
    path = out / "index.html"
    path.write_text("".join(parts))
    return path
