"""Shot detection: a fast content detector (default) and TransNetV2, both behind ``detect_scenes``.

The detector's modules (PyAV, numpy) are imported on first use of a name below, so that importing
``reelforge.curate.scenes.cli`` or ``.config`` (the CLI's parser, a build's config) stays light."""
from .config import SceneConfig

__all__ = ["SceneConfig", "SceneDetectionError", "SceneResult", "Transition", "detect_scenes"]


def __getattr__(name: str):
    if name == "detect_scenes":
        from .detect import detect_scenes

        return detect_scenes
    if name in ("SceneDetectionError", "SceneResult", "Transition"):
        from . import result

        return getattr(result, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
