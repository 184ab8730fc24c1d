"""SceneSplit: detect the shots of each input video and plan its clips.

One row per video in, the same row out with the shot boundaries and the clip plan (``clip_spans``,
one dict per ``ClipSpan``); a later step explodes ``clip_spans`` into clip rows. A file that cannot
be decoded becomes ``status=failed`` with the detector's message; one that decodes up to a cut (a
truncated download) keeps the shots before the cut, ``status=ok`` with a ``truncated: …`` reason.
"""
from __future__ import annotations

import dataclasses
import json

from ..clip_policy import ClipPolicyConfig, plan_clips
from ..media import complete_prefix, find_cut, local_copy
from ..scenes import SceneConfig, SceneDetectionError, detect_scenes
from ..stage import Resources, Stage


class SceneSplit(Stage):
    name = "scene_split"
    inputs = ("path",)
    outputs = ("frames", "fps", "start_time", "cuts", "transitions", "clip_spans")

    def __init__(self, scenes: SceneConfig, clips: ClipPolicyConfig):
        self.scenes = scenes
        self.clips = clips
        self._gpu = False
        if scenes.detector == "transnetv2":
            from ..scenes.transnet import TransNetV2Detector

            # load the weights once per actor, not once per video
            self._transnet = TransNetV2Detector(scenes)
            self._gpu = self._transnet.device.type == "cuda"

    @classmethod
    def resources(cls, scenes: SceneConfig, clips: ClipPolicyConfig | None = None) -> Resources:
        if scenes.detector == "transnetv2":
            # from the config alone, never the driver's hardware (like the model stages): an explicit
            # cuda device reserves a GPU; "auto" is resolved where the detector loads
            gpu = scenes.device.startswith("cuda")
            return Resources(num_cpus=1.0, num_gpus=1.0 if gpu else 0.0, batch_size=1, concurrency=1)
        # the decoder uses frame threads: two cores keep it busy
        return Resources(num_cpus=2.0, batch_size=1)

    def default_outputs(self) -> dict:
        return {"frames": 0, "fps": 0.0, "start_time": 0.0, "cuts": [], "transitions": "[]", "clip_spans": []}

    def process_row(self, row: dict) -> dict:
        try:
            with local_copy(row["path"]) as local:
                result, note = self._detect_decodable(local, int(row.get("frame_count") or 0))
        except SceneDetectionError as exc:
            return {"status": "failed", "reason": f"scene_split: {exc}"}
        result.path = row["path"]
        spans = plan_clips(result, self.clips)
        return note | {
            "frames": int(result.frames),
            "fps": float(result.fps),
            "start_time": float(result.pts[0]),
            "cuts": [int(c) for c in result.cuts],
            "transitions": json.dumps([dataclasses.asdict(t) for t in result.transitions]),
            "clip_spans": [dataclasses.asdict(s) for s in spans],
        }

    def _detect_decodable(self, local: str, declared_frames: int):
        """(shots of the decodable part, {"reason": where decoding stopped} for a truncated download)."""
        try:
            result = self._detect(local)
        except SceneDetectionError:
            # the decoder gave up at the cut: detect on the complete packets before it
            with complete_prefix(local) as prefix:
                if prefix is None:
                    raise
                result = self._detect(prefix[0])
                return result, {"reason": prefix[1].reason(result.frames, float(result.pts[-1]))}
        if result.frames < declared_frames:  # it stopped early without an error: say so if the file is cut
            cut = find_cut(local)
            if cut is not None:
                return result, {"reason": cut.reason(result.frames, float(result.pts[-1]))}
        return result, {}

    def _detect(self, local: str):
        if self.scenes.detector == "transnetv2":
            return self._transnet.detect(local)
        return detect_scenes(local, self.scenes)
