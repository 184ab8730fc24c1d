"""Text → video with an exported DiT: encode prompts, sample latents, decode, write mp4 (PyAV).

    reelforge generate --checkpoint out/dit/export --prompt "a red circle moves left" --out out/gen
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reelforge.train.dit.codec import load_codec
from reelforge.train.dit.flow import FlowConfig
from reelforge.train.dit.sample import SamplerConfig, sample
from reelforge.train.dit.text import TextEncoder


@torch.no_grad()
def generate_videos(model: nn.Module, encoder: TextEncoder, codec: str, prompts: list[str], latent_thw,
                    sampler: SamplerConfig, flow: FlowConfig, seed: int = 0, fps: float = 8.0,
                    batch_size: int = 8) -> list[np.ndarray]:
    """One (T, H, W, 3) uint8 video per prompt. Prompt i uses noise seed ``seed + i``, so a video does
    not depend on which other prompts share its batch."""
    device = next(model.parameters()).device
    dec = load_codec(codec)
    null, null_mask = (t.to(device) for t in encoder.empty())
    T, H, W = latent_thw
    C = model.cfg.in_channels
    size = torch.tensor([[H * dec.strides[1], W * dec.strides[2]]], dtype=torch.float32, device=device)
    videos = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        text, mask = (t.to(device) for t in encoder.encode(chunk))
        noise = torch.cat([torch.randn((1, C, T, H, W), generator=torch.Generator().manual_seed(seed + start + i))
                           for i in range(len(chunk))])
        B = len(chunk)
        z = sample(model, (B, C, T, H, W), text, mask, null, null_mask, sampler, flow, noise=noise,
                   fps=torch.full((B,), float(fps), device=device), size=size.expand(B, 2))
        videos += list(dec.decode(z.cpu()).numpy())
    return videos


def write_mp4(video: np.ndarray, path: str | Path, fps: float) -> Path:
    """(T, H, W, 3) uint8 → H.264 mp4 (odd sizes cropped by a pixel: yuv420p needs even ones)."""
    import av
    from fractions import Fraction

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    T, H, W, _ = video.shape
    video = video[:, : H - H % 2, : W - W % 2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001), options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = video.shape[2], video.shape[1], "yuv420p"
        for frame in video:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode())
    return path


def upsample_prompts(args, prompts: list[str]) -> list[str]:
    """Prompt upsampling through the recaption package (issue 13) when ``--upsample`` was given: a text
    LLM rewrites each prompt into a dense caption like the training captions."""
    from reelforge.recaption.prompt_upsample import upsample_from_args

    return upsample_from_args(args, prompts)


def cmd_generate(args) -> int:
    from reelforge.train.dit.task import load_dit
    from reelforge.train.dit.text import TextEncoderConfig

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, meta = load_dit(args.checkpoint, device)
    prompts = upsample_prompts(args, list(args.prompt))
    encoder = TextEncoder(TextEncoderConfig(**meta["text"]))
    sampler = SamplerConfig(**{**meta["sampler"], **({"steps": args.steps} if args.steps else {}),
                               **({"method": args.method} if args.method else {}),
                               **({"cfg_scale": args.cfg_scale} if args.cfg_scale is not None else {})})
    C, T, H, W = meta["latent_shape"]
    if args.frames:
        T = args.frames
    if args.size:
        s = load_codec(meta["codec"]).strides
        h, w = (int(v) for v in args.size.lower().split("x"))
        H, W = h // s[1], w // s[2]
    videos = generate_videos(model, encoder, meta["codec"], prompts, (T, H, W), sampler, FlowConfig(**meta["flow"]),
                             seed=args.seed, fps=meta["fps"])
    out = Path(args.out)
    records = []
    for i, (prompt, video) in enumerate(zip(prompts, videos)):
        path = write_mp4(video, out / f"video_{i:03d}.mp4", meta["fps"])
        records.append({"prompt": prompt, "path": str(path), "seed": args.seed + i})
        print(path)
    (out / "prompts.json").write_text(json.dumps(records, indent=1) + "\n")
    return 0
