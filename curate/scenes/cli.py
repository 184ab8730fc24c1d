"""``reelforge scenes VIDEO… [--detector content|transnetv2] [--json]``: shot detection as a tool.

``--json`` prints one JSON object per video and line: ``path``, ``status``, ``frames``, ``fps``,
``start_time``, ``scene_starts`` (first frame of each new shot after a hard cut, 0 excluded: what
``scenedetect`` lists), ``scene_starts_seconds``, ``transitions`` (fades and dissolves, kind, start,
end exclusive: their frames belong to no shot) and ``shots`` ([start, end) of each stretch of
picture between cuts and transitions). A file that cannot be read gives
``{"path", "status": "failed", "reason"}`` and the command goes on; the exit code is 1 if any failed.
"""
from __future__ import annotations

import argparse
import json
import sys

from .config import SceneConfig  # a dataclass: the detector itself is imported by run()


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("scenes", help="detect shot boundaries in videos (like `scenedetect`)")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (an unreadable one is reported, not fatal)")
    p.add_argument("--detector", choices=["content", "transnetv2"], default="content",
                   help="content: the build's detector (default); transnetv2: the learned one, real weights")
    p.add_argument("--device", default="auto", help="transnetv2: auto | cpu | cuda")
    p.add_argument("--min-shot-frames", type=int, default=SceneConfig.min_shot_frames,
                   help=f"no cut closer than this to the previous one (default {SceneConfig.min_shot_frames})")
    p.add_argument("--json", action="store_true", help="one JSON object per video")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from .detect import detect_scenes  # PyAV, numpy: not for `reelforge --help`
    from .result import SceneDetectionError

    cfg = SceneConfig(detector=args.detector, device=args.device, min_shot_frames=args.min_shot_frames)
    detector = None
    if cfg.detector == "transnetv2":
        from .transnet import TransNetV2Detector

        detector = TransNetV2Detector(cfg)  # load the weights once for all files
    failed = 0
    for path in args.videos:
        try:
            r = detector.detect(path) if detector else detect_scenes(path, cfg)
        except SceneDetectionError as exc:
            failed += 1
            if args.json:
                print(json.dumps({"path": path, "status": "failed", "reason": str(exc)}), flush=True)
            else:
                print(f"{path}: FAILED: {exc}", file=sys.stderr)
            continue
        obj = r.to_json()
        starts = obj["scene_starts"]
        if args.json:
            print(json.dumps(obj), flush=True)
        else:
            print(f"{path}: {r.frames} frames @ {r.fps:.3f} fps, {len(r.shots())} shots")
            for i, s in zip(starts, obj["scene_starts_seconds"]):
                print(f"  shot starts at frame {i} ({s:.3f} s)")
            for t in r.transitions:
                print(f"  {t.kind} {t.start}-{t.end}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reelforge")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["scenes", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
