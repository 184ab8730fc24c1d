"""The LAION aesthetic heads: small torch modules on a CLIP image embedding, read from their published files.

Two formats, both as LAION published them:
- the "improved aesthetic predictor" MLP (state-dict keys ``layers.{0,2,4,6,7}``): Linear(D,1024) ->
  Dropout -> Linear(1024,128) -> Dropout -> Linear(128,64) -> Dropout -> Linear(64,16) -> Linear(16,1),
  no activations (in eval mode it is one affine map, but we keep the published layout);
- the original linear head (``weight`` (1, D), ``bias`` (1,)).

Kept apart from the stage (``curate/stages/aesthetic.py``) so that a build without weights, which only
records the stage's skip, never imports torch (2-3 s of CPU per worker process; BENCHMARKS.md, issue 12).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class ImprovedAestheticMLP(nn.Module):
    """LAION improved aesthetic predictor (sac+logos+ava1, linear MSE)."""

    def __init__(self, dim: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, D) -> (N,)
        return self.layers(x).squeeze(-1)


class LinearAestheticHead(nn.Module):
    """LAION aesthetic predictor v1: one linear layer on the CLIP embedding."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, D) -> (N,)
        return self.linear(x).squeeze(-1)


def load_aesthetic_head(path: str | Path) -> nn.Module:
    """Read either published head format from ``path`` (weights only); returns the module in eval mode."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"aesthetic head not found: {p}")
    state = torch.load(p, map_location="cpu", weights_only=True)  # saved on GPU by LAION
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if "layers.0.weight" in state:
        head: nn.Module = ImprovedAestheticMLP(dim=state["layers.0.weight"].shape[1])
        head.load_state_dict(state)
    elif "weight" in state and "bias" in state:
        head = LinearAestheticHead(dim=state["weight"].shape[1])
        head.linear.load_state_dict(state)
    else:
        raise ValueError(f"{p}: unknown aesthetic head format (keys: {sorted(state)[:6]})")
    return head.eval()


@torch.inference_mode()
def score_frames(head: nn.Module, emb, device: str):
    """(N, D) float32 unit embeddings (numpy) -> (N,) numpy head scores."""
    x = torch.from_numpy(emb).to(device)
    return head(x).float().cpu().numpy()
