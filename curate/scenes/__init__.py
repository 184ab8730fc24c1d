"""Shot detection: a fast content detector (default) and TransNetV2, both behind ``detect_scenes``."""
from .config import SceneConfig
from .detect import detect_scenes
from .result import SceneDetectionError, SceneResult, Transition

__all__ = ["SceneConfig", "SceneDetectionError", "SceneResult", "Transition", "detect_scenes"]
