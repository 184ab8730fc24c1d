"""``detect_scenes``: one entry point for both detectors."""
from __future__ import annotations

from .config import SceneConfig
from .content import detect_content
from .reader import read_features
from .result import SceneResult


def detect_scenes(path: str, cfg: SceneConfig) -> SceneResult:
    """Shots of one local video file. Raises SceneDetectionError for undecodable or empty files."""
    if cfg.detector == "transnetv2":
        from .transnet import detect_transnet  # imports torch: only when asked for

        return detect_transnet(path, cfg)
    feat = read_features(path, cfg)
    cuts, transitions = detect_content(feat, cfg)
    return SceneResult(path=path, frames=len(feat.pts), fps=feat.fps, pts=feat.pts,
                       cuts=cuts, transitions=transitions)
