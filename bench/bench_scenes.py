"""Shot-detection benchmark: this detector vs PySceneDetect ContentDetector vs TransNetV2.

Same process, same files: a generated 1080p H.264 clip (reelforge.samples, into a temp dir) and
../shared/media/psd_testvideo.mp4 (720p H.264). For each: the share of frames our fast reader
decoded, frames per second of wall-clock time (best of ``--repeats`` runs, for every detector alike,
the detectors taking turns in each repeat) and the process CPU time, for ours (default config: two
decoding threads, one single-threaded decoder each), PySceneDetect 0.7 ContentDetector (defaults,
OpenCV backend) and TransNetV2 (real weights; CPU: on the 720p file only, it is slow), with the
ratios ours / PySceneDetect. Then accuracy: exact cuts on the generated clip, recall on the
``consensus`` and precision against the ``union`` cuts of ../shared/media/GROUND_TRUTH.json
(tolerance 2 frames), psd_counter.mp4 (no cut) and psd_fades.mp4 (fades as transitions).

    .venv/bin/python bench/bench_scenes.py [--repeats 5] [VIDEO ...]
    .venv/bin/python bench/bench_scenes.py --long 20 [--keep DIR]

With ``--processes`` it runs whole processes instead (``reelforge scenes`` against a process running
PySceneDetect's ``detect()``, start-up included), by default on footage like issue 12's (``issue_like``:
real shots of 1-9 s, x264 with its defaults, 2 minutes, 1080p and 720p).
With VIDEO paths it times those instead (your own footage), without the accuracy lines. With
``--long MINUTES`` it measures memory instead: sintel_trailer_30s re-encoded once at 1080p, looped
by stream copy to that length, and ``reelforge scenes`` run on it as a process: its peak RSS, CPU
seconds, and the frames its reader decoded.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

from reelforge.curate.scenes import SceneConfig, detect_scenes
from reelforge.curate.scenes.reader import read_features
from reelforge.samples import ShotSpec, VideoSpec, load_ground_truth, render_video

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "media"
TOL = 2
CLIPS = ("sintel_trailer_10s.mp4", "sintel_trailer_30s.mp4", "psd_testvideo.mp4")


def timed(fns: list, repeats: int) -> list[tuple[float, float]]:
    """Per function: (best wall seconds, CPU seconds of that run). The functions take turns in
    each repeat, so a load that comes and goes during the run weighs on all of them alike."""
    best = [(float("inf"), 0.0)] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            c, w = time.process_time(), time.perf_counter()
            fn()
            best[i] = min(best[i], (time.perf_counter() - w, time.process_time() - c))
    return best


def run_psd(path: str) -> list[int]:
    from scenedetect import ContentDetector, SceneManager, open_video

    video = open_video(path)
    sm = SceneManager()
    sm.add_detector(ContentDetector())
    sm.detect_scenes(video)
    return [s[0].frame_num for s in sm.get_scene_list()][1:]


def generated_1080p(out_dir: Path) -> str:
    # 20 s, 8 shots: object motion, pans, a still shot, hand-held shake; H.264 with a fixed 2 s GOP
    # and no keyframes at cuts (reelforge.samples), so most cuts fall inside GOPs
    spec = VideoSpec("gen1080", [
        ShotSpec(90, "blobs", (200, 80, 40), "circle", motion="object"),
        ShotSpec(75, "gradient", (40, 90, 200), None, motion="pan", direction="left"),
        ShotSpec(90, "blobs", (60, 160, 60), "square", motion="object", direction="down"),
        ShotSpec(60, "checker", (220, 200, 60), "circle", motion="jitter"),
        ShotSpec(80, "gradient", (150, 60, 150), "circle", motion="static"),
        ShotSpec(70, "stripes", (90, 140, 40), None, motion="pan", direction="up", speed=1.0),
        ShotSpec(75, "blobs", (30, 120, 160), "circle", motion="object", direction="left"),
        ShotSpec(60, "noise", (160, 120, 90), "square", motion="object", direction="right"),
    ], width=1920, height=1080, fps=30, seed=7)
    return str(render_video(spec, out_dir))


# real hard cuts that neither reference detector reported (checked frame by frame; PySceneDetect's
# HashDetector finds it): sintel 30 s frame 356, 8 frames after the cut at 348 (see tests/curate/test_scenes.py)
VERIFIED_OUTSIDE_UNION = {"sintel_trailer_30s.mp4": [356]}


def loop_packets(one: Path, out: Path, minutes: float) -> Path:
    """``one``'s video packets copied again and again with shifted timestamps to ``minutes`` of
    video (each loop starts at a keyframe, so the copy decodes like one long encode)."""
    with av.open(str(one)) as inp:
        ist = inp.streams.video[0]
        packets = [p for p in inp.demux(ist) if p.size]
        span = len(packets) * int(1 / (ist.average_rate * ist.time_base))  # one loop, in time_base units
        loops = max(1, round(minutes * 60 * float(ist.average_rate) / len(packets)))
        with av.open(str(out), "w") as o:
            ost = o.add_stream_from_template(ist)
            for i in range(loops):
                for p in packets:
                    q = av.Packet(bytes(p))
                    q.pts, q.dts, q.is_keyframe = p.pts + i * span, p.dts + i * span, p.is_keyframe
                    q.time_base, q.stream = ist.time_base, ost
                    o.mux(q)
    return out


def long_1080p(out_dir: Path, minutes: float, height: int = 1080) -> str:
    """sintel_trailer_30s at 1920x1080 (or 16:9 at ``height``; x264 superfast, crf 23, encoded once),
    looped by stream copy to ``minutes`` of video: a long real input for the cost of a 30 s encode."""
    from bench_build import sintel_1080p  # same folder: the one 1080p re-encode both benches use

    out = out_dir / f"sintel_{height}p_{minutes:g}min.mp4"
    if out.exists():
        return str(out)
    return str(loop_packets(sintel_1080p(out_dir, crf=23, height=height), out, minutes))


# issue 12's footage: ~2 minutes of real shots several seconds long, H.264 with x264's defaults
# (preset medium, crf 23, keyint 250, scene-cut keyframes, 3 B-frames). Which sources, in order, one
# encode at 24 fps (psd_testvideo's 29.97 fps frames are shown at 24: the pictures, not their
# timing, are what a shot detector reads)
ISSUE_LIKE = {
    "psd": ["psd_testvideo.mp4"],  # shots of 1-9 s (cuts at 30, 180, 394 + soft ones), ~16 frames of motion
    "mix": ["psd_testvideo.mp4", "sintel_trailer_30s.mp4"],  # half long shots, half sintel's ~2 s ones
    "sintel": ["sintel_trailer_30s.mp4"],  # ~2 s shots, fast action: cuts every ~50 frames
}


def issue_like(out_dir: Path, kind: str, height: int = 1080, minutes: float = 2.0, scenecut: bool = True) -> str:
    """The ``ISSUE_LIKE[kind]`` sources scaled to 16:9 at ``height``, encoded once in a row by
    libx264 with its defaults (``scenecut=False``: no keyframes at cuts, one every 250 frames),
    then looped by stream copy to ``minutes``."""
    tag = kind if scenecut else f"{kind}_nosc"
    out = out_dir / f"issue_{tag}_{height}p_{minutes:g}min.mp4"
    if out.exists():
        return str(out)
    width = height * 16 // 9 // 2 * 2
    one = out_dir / f"issue_{tag}_{height}p_once.mp4"
    if not one.exists():
        rate = 24
        with av.open(str(one.with_suffix(".tmp.mp4")), "w") as o:
            st = o.add_stream("libx264", rate=rate)
            st.width, st.height, st.pix_fmt, st.time_base = width, height, "yuv420p", Fraction(1, rate)
            if not scenecut:
                st.options = {"sc_threshold": "0"}
            n = 0
            for name in ISSUE_LIKE[kind]:
                with av.open(str(SHARED / name)) as inp:
                    for f in inp.decode(inp.streams.video[0]):
                        f = f.reformat(width=width, height=height, format="yuv420p")
                        f.pts, f.time_base = n, Fraction(1, rate)
                        f.pict_type = av.video.frame.PictureType.NONE  # x264 picks its frame types
                        o.mux(st.encode(f))
                        n += 1
            o.mux(st.encode())
        one.with_suffix(".tmp.mp4").rename(one)
    return str(loop_packets(one, out, minutes))


def three_frames(out_dir: Path) -> str:
    """A 3-frame 1080p H.264 file: what a whole process costs with next to nothing to detect."""
    out = out_dir / "three_frames_1080p.mp4"
    if not out.exists():
        import numpy as np

        with av.open(str(out), "w") as o:
            st = o.add_stream("libx264", rate=24)
            st.width, st.height, st.pix_fmt = 1920, 1080, "yuv420p"
            for i in range(3):
                f = av.VideoFrame.from_ndarray(np.full((1080, 1920, 3), 60 * i, np.uint8), format="rgb24")
                f.pts = i
                o.mux(st.encode(f))
            o.mux(st.encode())
    return str(out)


def memory(minutes: float, keep: str | None) -> None:
    """Peak RSS, CPU seconds and decoded frames of ``reelforge scenes`` on a long 1080p input."""
    import resource
    import subprocess
    import sys

    out_dir = Path(keep or tempfile.mkdtemp(prefix="bench-scenes-long-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = long_1080p(out_dir, minutes)
    exe = str(Path(sys.executable).with_name("reelforge"))
    w = time.perf_counter()
    r = subprocess.run([exe, "scenes", path, "--json"], stdout=subprocess.PIPE, text=True, check=True)
    wall = time.perf_counter() - w
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    obj = json.loads(r.stdout)
    code = ("import sys; from reelforge.curate.scenes import SceneConfig; "
            "from reelforge.curate.scenes.reader import read_features; "
            "f = read_features(sys.argv[1], SceneConfig()); print(f.decoded, int(f.known.sum()))")
    decoded, kept = subprocess.run([sys.executable, "-c", code, path], stdout=subprocess.PIPE, text=True,
                                   check=True).stdout.split()
    print(f"{path}: {obj['frames']} frames, {len(obj['scene_starts'])} cuts, {len(obj['transitions'])} transitions")
    print(f"reelforge scenes: peak RSS {u.ru_maxrss / 1024:.0f} MB, {u.ru_utime + u.ru_stime:.1f} s CPU, "
          f"{wall:.1f} s wall; frames decoded {decoded}, thumbnails kept {kept} "
          f"({int(kept) * 3456 / 2**20:.0f} MB of uint8)")


def run_process(cmd: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the process and its children) of one whole process, start-up included."""
    import os
    import subprocess

    c0 = os.times()
    w = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - w
    c1 = os.times()
    return wall, (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)


def processes(files: list[tuple[str, str]], repeats: int) -> None:
    """``reelforge scenes FILE --json`` against a Python process running PySceneDetect's
    ``detect(FILE, ContentDetector())``, each a whole process (imports, start-up, decode), taking
    turns ``repeats`` times; medians of wall and CPU and their ratios."""
    import os
    import statistics
    import sys

    exe = str(Path(sys.executable).with_name("reelforge"))
    psd = ("import sys; from scenedetect import detect, ContentDetector; "
           "print(len(detect(sys.argv[1], ContentDetector())))")
    print(f"whole processes, {repeats} repeats each (medians); load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'file':28s} {'res':>9s} {'frames':>6s} | {'ours wall':>9s} {'ours cpu':>8s} | {'psd wall':>8s} "
          f"{'psd cpu':>8s} | {'wall ratio':>10s} {'cpu ratio':>9s}")
    for name, path in files:
        with av.open(path) as c:
            s = c.streams.video[0]
            res, frames = f"{s.width}x{s.height}", s.frames
        ours, theirs = [], []
        for _ in range(repeats):
            ours.append(run_process([exe, "scenes", path, "--json"]))
            theirs.append(run_process([sys.executable, "-c", psd, path]))
        ow, oc = (statistics.median(x) for x in zip(*ours))
        pw, pc = (statistics.median(x) for x in zip(*theirs))
        print(f"{name:28s} {res:>9s} {frames:6d} | {ow:8.2f}s {oc:7.2f}s | {pw:7.2f}s {pc:7.2f}s | "
              f"{pw / ow:9.1f}x {pc / oc:8.1f}x")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("videos", nargs="*", help="time these files instead (speed only; no accuracy lines)")
    ap.add_argument("--long", type=float, metavar="MINUTES",
                    help="memory instead: peak RSS of `reelforge scenes` on sintel looped to MINUTES of 1080p")
    ap.add_argument("--keep", metavar="DIR", help="--long, --processes: build (or reuse) the inputs in DIR")
    ap.add_argument("--processes", action="store_true",
                    help="whole processes instead: `reelforge scenes` vs PySceneDetect's detect(), start-up "
                         "included, on issue 12's kind of footage (ISSUE_LIKE at 1080p and 720p, x264 defaults, "
                         "2 minutes; encoded once into --keep DIR: ~15 CPU minutes), psd_testvideo without "
                         "scene-cut keyframes (GOP 250) and psd_testvideo.mp4 itself (720p); or on VIDEOs")
    args = ap.parse_args()
    if args.long:
        memory(args.long, args.keep)
        return
    if args.processes:
        keep = Path(args.keep or tempfile.mkdtemp(prefix="bench-scenes-proc-"))
        keep.mkdir(parents=True, exist_ok=True)
        files = [(Path(v).name, v) for v in args.videos] or [
            ("psd_testvideo 1080p, 2 min (x264 defaults)", issue_like(keep, "psd", 1080)),
            ("psd_testvideo 720p, 2 min (x264 defaults)", issue_like(keep, "psd", 720)),
            ("psd + sintel 1080p, 2 min (x264 defaults)", issue_like(keep, "mix", 1080)),
            ("psd + sintel 720p, 2 min (x264 defaults)", issue_like(keep, "mix", 720)),
            ("sintel 1080p, 2 min (x264 defaults)", issue_like(keep, "sintel", 1080)),
            ("sintel 720p, 2 min (x264 defaults)", issue_like(keep, "sintel", 720)),
            ("psd_testvideo 1080p, 2 min (GOP 250, no scene-cut)", issue_like(keep, "psd", 1080, scenecut=False)),
            ("psd_testvideo 720p, 2 min (GOP 250, no scene-cut)", issue_like(keep, "psd", 720, scenecut=False)),
            ("psd_testvideo.mp4", str(SHARED / "psd_testvideo.mp4")),
            ("3 frames 1080p (start-up)", three_frames(keep))]
        processes(files, args.repeats)
        return
    if args.videos:
        files = [(Path(v).name, v) for v in args.videos]
    else:
        gen = generated_1080p(Path(tempfile.mkdtemp(prefix="bench-scenes-")))
        files = [("gen1080.mp4", gen)]
        if (SHARED / "psd_testvideo.mp4").exists():
            files.append(("psd_testvideo.mp4", str(SHARED / "psd_testvideo.mp4")))
    cfg = SceneConfig()
    w = max(18, *(len(name) for name, _ in files))
    print(f"{'file':{w}s} {'res':>9s} {'frames':>6s} {'decoded':>7s} | {'ours fps':>8s} {'psd fps':>8s} "
          f"{'tnv2 fps':>8s} | {'ours/psd':>8s} {'cpu ratio':>9s}")
    for name, path in files:
        with av.open(path) as c:
            s = c.streams.video[0]
            res = f"{s.width}x{s.height}"
        # frames the fast reader decoded (re-decoded ones count again): what the speed comes from,
        # and, unlike the timings, the same on a busy machine
        feat = read_features(path, cfg)
        frames, decoded = len(feat.pts), feat.decoded
        (ours_w, ours_c), (psd_w, psd_c) = timed(
            [lambda: detect_scenes(path, cfg), lambda: run_psd(path)], args.repeats)
        tn = float("nan")
        if name == "psd_testvideo.mp4":
            from reelforge.curate.scenes.transnet import TransNetV2Detector

            det = TransNetV2Detector(SceneConfig(detector="transnetv2"))
            tn = frames / timed([lambda: det.detect(path)], 1)[0][0]
        print(f"{name:{w}s} {res:>9s} {frames:6d} {decoded / frames:7.0%} | {frames / ours_w:8.0f} {frames / psd_w:8.0f} {tn:8.1f} | "
              f"{psd_w / ours_w:8.2f} {psd_c / ours_c:9.2f}")

    if args.videos:
        return
    truth = load_ground_truth(gen)
    r = detect_scenes(gen, cfg)
    print(f"generated 1080p: cuts {r.cuts}, truth {truth['cuts']}: exact={r.cuts == truth['cuts']}")
    if not SHARED.exists():
        print("../shared/media absent: no reference accuracy")
        return
    gt = json.loads((SHARED / "GROUND_TRUTH.json").read_text())
    hits = total = false = false_v = reported = 0
    for name in CLIPS:
        cuts = detect_scenes(str(SHARED / name), cfg).cuts
        total += len(gt[name]["consensus"])
        hits += sum(any(abs(c - x) <= TOL for x in cuts) for c in gt[name]["consensus"])
        reported += len(cuts)
        false += sum(not any(abs(u - x) <= TOL for u in gt[name]["union"]) for x in cuts)
        union_v = gt[name]["union"] + VERIFIED_OUTSIDE_UNION.get(name, [])
        false_v += sum(not any(abs(u - x) <= TOL for u in union_v) for x in cuts)
    print(f"shared media ({', '.join(CLIPS)}), hard cuts: recall on consensus {hits}/{total} = "
          f"{hits / total:.3f}; precision vs union {reported - false}/{reported} = {(reported - false) / reported:.3f}; "
          f"vs union + cuts verified by eye {reported - false_v}/{reported} = {(reported - false_v) / reported:.3f}")
    rc = detect_scenes(str(SHARED / "psd_counter.mp4"), cfg)
    print(f"psd_counter.mp4: cuts {rc.cuts} transitions {rc.transitions}")
    rf = detect_scenes(str(SHARED / "psd_fades.mp4"), cfg)
    print(f"psd_fades.mp4: cuts {rf.cuts}, transitions {[(t.kind, t.start, t.end) for t in rf.transitions]}")


if __name__ == "__main__":
    main()
