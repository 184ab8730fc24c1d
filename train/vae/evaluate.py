"""Reconstruction quality on held-out clips: PSNR and SSIM (LPIPS-style distance when the perceptual
net is given), per evaluation appended to ``eval/metrics.jsonl``, and side-by-side mp4s (input | recon).

All metrics on frames in [0, 1]: PSNR = 10 log10(1 / MSE) per clip, averaged over clips; SSIM with an
11x11 Gaussian window (sigma 1.5, Wang et al. 2004) per frame and RGB channel, averaged.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per clip PSNR in dB; x, y (B, C, T, H, W) in [-1, 1]. Identical clips give 100 dB (capped)."""
    mse = ((x.float().clamp(-1, 1) - y.float().clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).clamp(max=100.0)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size) - size // 2).float() ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per clip mean SSIM; x, y (B, C, T, H, W) in [-1, 1] (computed per frame and channel in [0, 1])."""
    b, c, t, h, w = x.shape
    a = ((x.float().clamp(-1, 1) + 1) / 2).transpose(1, 2).reshape(b * t * c, 1, h, w)
    o = ((y.float().clamp(-1, 1) + 1) / 2).transpose(1, 2).reshape(b * t * c, 1, h, w)
    size = min(11, h, w)
    win = _gaussian_window(size).to(x.device)[None, None]
    mu_a, mu_o = F.conv2d(a, win), F.conv2d(o, win)
    var_a = F.conv2d(a * a, win) - mu_a ** 2
    var_o = F.conv2d(o * o, win) - mu_o ** 2
    cov = F.conv2d(a * o, win) - mu_a * mu_o
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_o + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_o ** 2 + c1) * (var_a + var_o + c2))
    return s.reshape(b, -1).mean(1)


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """(C, T, H, W) in [-1, 1] -> (T, H, W, C) uint8."""
    return ((video.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()


def write_side_by_side(path: Path, original: torch.Tensor, recon: torch.Tensor, fps: float = 8.0) -> Path:
    """An H.264 mp4 of input | reconstruction; original, recon (C, T, H, W) in [-1, 1]."""
    import av

    frames = np.concatenate([to_uint8_frames(original), to_uint8_frames(recon)], axis=2)  # (T, H, 2W, C)
    h, w = frames.shape[1:3]
    pad_h, pad_w = h % 2, w % 2  # yuv420p needs even sides
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@torch.no_grad()
def evaluate_reconstruction(vae, clips: list[torch.Tensor], step: int, out_dir: Path, perceptual=None,
                            videos: int = 2, fps: float = 8.0) -> dict[str, float]:
    """Reconstruct each clip (C, T, H, W) in [-1, 1] from its posterior mean; returns the means of
    psnr, ssim (and lpips), appends them to ``out_dir/metrics.jsonl`` and writes ``videos`` mp4s."""
    device = next(vae.parameters()).device
    scores = {"psnr": [], "ssim": []}
    if perceptual is not None:
        scores["lpips"] = []
    for i, clip in enumerate(clips):
        x = clip.unsqueeze(0).to(device).float()                              # (1, C, T, H, W)
        y = vae.decode(vae.encode(x).mean).float().clamp(-1, 1)
        scores["psnr"].append(float(psnr(x, y)[0]))
        scores["ssim"].append(float(ssim(x, y)[0]))
        if perceptual is not None:
            from reelforge.train.vae.losses import frames_of
            p = perceptual.to(device)
            scores["lpips"].append(float(p(frames_of(y, x.shape[2]), frames_of(x, x.shape[2])).mean()))
        if i < videos:
            write_side_by_side(out_dir / f"step_{step:08d}" / f"clip_{i:02d}.mp4", x[0], y[0], fps)
    metrics = {k: float(np.mean(v)) for k, v in scores.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": step, "clips": len(clips), **metrics}) + "\n")
    return metrics
