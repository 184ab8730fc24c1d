"""Configuration of shot detection (config section ``curate.scenes``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class SceneConfig:
    detector: Literal["content", "transnetv2"] = "content"
    # a cut closer than this to the previous one (or to the start) is dropped; transitions are kept
    min_shot_frames: int = 8
    device: str = "auto"  # transnetv2: "auto" | "cpu" | "cuda"

    # --- content detector. Distances are mean absolute differences of 64x36 Y + 32x18 U/V
    # thumbnails, summed over the three planes, on the 0-255 scale.
    # a hard cut needs a frame-to-frame distance of at least this ...
    cut_threshold: float = 24.0
    # ... and this many times the typical (median) distance around it, so fast motion is not a cut
    cut_ratio: float = 3.6
    # a quiet shot's cut can be smaller: a jump of cut_threshold / 3 counts when it is 3 * cut_ratio
    # times the local level (dark or low-contrast footage)
    # a cut must also change the picture's layout (1 - correlation of luma thumbnails) by at least
    # this, unless the pictures are flat: a colour or brightness change alone is not a new shot
    cut_min_structure: float = 0.35
    # a loud jump only this many times the local level (under cut_ratio) is still a cut when its
    # layout change is cut_layout_ratio times the local median layout change: fast motion shifts
    # and blurs the picture but keeps much of its layout, so its neighbours change layout too
    cut_layout_min_ratio: float = 2.5
    cut_layout_ratio: float = 3.0
    # a jump that comes back (to within this fraction of the jump) within flash_frames is a flash
    flash_frames: int = 4
    flash_return: float = 0.4
    # fast path: two consecutive decoded frames further apart than this (and than their neighbours
    # by 2x) get the frames between them decoded too; a quiet chunk or tail whose last decoded frame
    # is further than this from the next chunk's first is decoded after all. Lower = safer, slower
    refine_threshold: float = 10.0
    # fades: a frame whose mean luma is below this (0-255, video range black is 16) is black
    black_luma: float = 24.0
    black_max_std: float = 6.0  # ... and whose luma varies less than this (black is flat)
    # gradual transitions (dissolves and fades) shorter than this are not reported as such
    min_transition_frames: int = 3
    max_transition_frames: int = 90
    # a dissolve must move the picture at least this far (distance between its two ends)
    dissolve_threshold: float = 20.0
    # decode every frame instead of the reference-frames-first fast path (slower, for debugging)
    exact: bool = False
    # fast path: a reference packet this many times the chunk's median inter packet is a "spike"
    # (likely a cut): the frames just before it are decoded in the first pass
    spike_ratio: float = 3.0
    # fast path: chunks of GOPs without spikes decode only their keyframes (checked against the
    # next chunk; decoded after all when the picture moved)
    skip_quiet: bool = True
    # fast path: skip the in-loop deblocking filter and allow non-bit-exact speedups
    fast_decode: bool = True
    # fast path: chunks of GOPs decoded at once, one decoder each (0 = min(2, cpu count))
    decode_workers: int = 0
    # PyAV thread_type inside each decoder: "NONE" (the cheapest in CPU time: the fast path gets its
    # parallelism from decode_workers; but where there are fewer chunks than workers, e.g. a
    # one-GOP clip, its decoders use frame threads, one per worker), "AUTO" (frame + slice
    # threads), "SLICE" or "FRAME"
    decode_threads: str = "NONE"

    # --- transnetv2
    transnet_threshold: float = 0.5
    # 100-frame windows per forward pass; 0 = auto: 1 on CPU (bigger batches measured slower on a
    # 2-core CPU), 16 on GPU
    transnet_batch_windows: int = 0

    def __post_init__(self):
        if self.detector not in ("content", "transnetv2"):
            raise ValueError(f"detector must be 'content' or 'transnetv2', got {self.detector!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.min_shot_frames < 1:
            raise ValueError(f"min_shot_frames must be >= 1, got {self.min_shot_frames}")
        for name in ("cut_threshold", "refine_threshold", "dissolve_threshold", "black_luma"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.cut_min_structure <= 1.0:
            raise ValueError(f"cut_min_structure must be in [0, 1], got {self.cut_min_structure}")
        if self.cut_ratio < 1.0:
            raise ValueError(f"cut_ratio must be >= 1, got {self.cut_ratio}")
        if not 1.0 <= self.cut_layout_min_ratio <= self.cut_ratio:
            raise ValueError(
                f"cut_layout_min_ratio must be in [1, cut_ratio={self.cut_ratio}], got {self.cut_layout_min_ratio}")
        if self.cut_layout_ratio < 1.0:
            raise ValueError(f"cut_layout_ratio must be >= 1, got {self.cut_layout_ratio}")
        if self.flash_frames < 0:
            raise ValueError(f"flash_frames must be >= 0, got {self.flash_frames}")
        if not 0.0 < self.flash_return < 1.0:
            raise ValueError(f"flash_return must be in (0, 1), got {self.flash_return}")
        if not 1 <= self.min_transition_frames <= self.max_transition_frames:
            raise ValueError(
                "need 1 <= min_transition_frames <= max_transition_frames, got "
                f"{self.min_transition_frames}, {self.max_transition_frames}")
        if self.spike_ratio <= 1.0:
            raise ValueError(f"spike_ratio must be > 1, got {self.spike_ratio}")
        if self.decode_workers < 0:
            raise ValueError(f"decode_workers must be >= 0 (0 = auto), got {self.decode_workers}")
        if self.decode_threads not in ("AUTO", "SLICE", "FRAME", "NONE"):
            raise ValueError(f"decode_threads must be AUTO, SLICE, FRAME or NONE, got {self.decode_threads!r}")
        if not 0.0 < self.transnet_threshold < 1.0:
            raise ValueError(f"transnet_threshold must be in (0, 1), got {self.transnet_threshold}")
        if self.transnet_batch_windows < 0:
            raise ValueError(f"transnet_batch_windows must be >= 0 (0 = auto), got {self.transnet_batch_windows}")
