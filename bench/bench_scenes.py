"""Shot-detection benchmark: this detector vs PySceneDetect ContentDetector vs TransNetV2.

Same process, same files: a generated 1080p H.264 clip (reelforge.samples, into a temp dir) and
../shared/media/psd_testvideo.mp4 (720p H.264). Prints fps of each, the ratio ours / PySceneDetect,
and accuracy against references. TransNetV2 on CPU runs on the 720p file only (it is slow).

    .venv/bin/python bench/bench_scenes.py
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from reelforge.curate.scenes import SceneConfig, detect_scenes
from reelforge.samples import ShotSpec, VideoSpec, load_ground_truth, render_video

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "media"
TOL = 2


def psd_fps(path: str) -> tuple[float, list[int]]:
    from scenedetect import ContentDetector, SceneManager, open_video

    video = open_video(path)
    sm = SceneManager()
    sm.add_detector(ContentDetector())
    t = time.perf_counter()
    sm.detect_scenes(video)
    dt = time.perf_counter() - t
    return video.frame_number / dt, [s[0].frame_num for s in sm.get_scene_list()][1:]


def ours_fps(path: str, repeats: int = 2) -> tuple[float, object]:
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        r = detect_scenes(path, SceneConfig())
        best = max(best, r.frames / (time.perf_counter() - t))
    return best, r


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-scenes-"))
    spec = VideoSpec("gen1080", [
        ShotSpec(90, "blobs", (200, 80, 40), "circle", motion="object"),
        ShotSpec(75, "stripes", (40, 90, 200), None, motion="pan", direction="left"),
        ShotSpec(90, "noise", (60, 160, 60), "square", motion="object", direction="down"),
        ShotSpec(45, "checker", (220, 200, 60), "circle", motion="jitter"),
    ], width=1920, height=1080, fps=30, seed=7)
    gen = str(render_video(spec, tmp))
    files = [("gen1080.mp4", gen)]
    if (SHARED / "psd_testvideo.mp4").exists():
        files.append(("psd_testvideo.mp4", str(SHARED / "psd_testvideo.mp4")))
    print(f"{'file':20s} {'res':>10s} {'frames':>6s} {'ours':>8s} {'psd':>8s} {'tnv2':>8s} {'ours/psd':>8s}")
    for name, path in files:
        ours, r = ours_fps(path)
        psd, _ = psd_fps(path)
        tn = float("nan")
        if name == "psd_testvideo.mp4":
            from reelforge.curate.scenes.transnet import TransNetV2Detector

            det = TransNetV2Detector(SceneConfig(detector="transnetv2"))
            t = time.perf_counter()
            det.detect(path)
            tn = r.frames / (time.perf_counter() - t)
        import av
        with av.open(path) as c:
            res = f"{c.streams.video[0].width}x{c.streams.video[0].height}"
        print(f"{name:20s} {res:>10s} {r.frames:6d} {ours:8.0f} {psd:8.0f} {tn:8.0f} {ours / psd:8.2f}")
    truth = load_ground_truth(gen)
    r = detect_scenes(gen, SceneConfig())
    print(f"generated 1080p: cuts {r.cuts} truth {truth['cuts']} exact={r.cuts == truth['cuts']}")
    if SHARED.exists():
        gt = json.loads((SHARED / "GROUND_TRUTH.json").read_text())
        hits = total = fp = rep = 0
        for name in ("sintel_trailer_10s.mp4", "sintel_trailer_30s.mp4", "psd_testvideo.mp4"):
            r = detect_scenes(str(SHARED / name), SceneConfig())
            b = [(c, c) for c in r.cuts] + [(t.start, t.end) for t in r.transitions if t.start > 0 and t.end < r.frames]
            total += len(gt[name]["consensus"])
            hits += sum(any(x - TOL <= c <= y + TOL for x, y in b) for c in gt[name]["consensus"])
            rep += len(b)
            fp += sum(not any(x - TOL <= u <= y + TOL for u in gt[name]["union"]) for x, y in b)
        print(f"shared media: recall on consensus {hits}/{total} = {hits / total:.3f}; "
              f"precision vs union {rep - fp}/{rep} = {(rep - fp) / rep:.3f}")
        rc = detect_scenes(str(SHARED / "psd_counter.mp4"), SceneConfig())
        print(f"psd_counter.mp4: cuts {rc.cuts}")
        rf = detect_scenes(str(SHARED / "psd_fades.mp4"), SceneConfig())
        print(f"psd_fades.mp4: cuts {rf.cuts}, transitions {[(t.kind, t.start, t.end) for t in rf.transitions]}")


if __name__ == "__main__":
    main()
