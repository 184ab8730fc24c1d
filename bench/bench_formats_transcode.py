"""Transcode CPU by source colour: the stage as it is against another version of it, on the same spans.

For each input, up to 4 spans of 2 s are transcoded by both versions in turn, 3 times; the minimum CPU
(user+sys of this process, getrusage) and wall of each are printed with the source's colour as the probe
reads it. The other version is a transcode.py from git, e.g. the one before the clips were tagged:

    git show 9e72a79~1:curate/stages/transcode.py > /tmp/transcode_untagged.py
    .venv/bin/python bench/bench_formats_transcode.py --other /tmp/transcode_untagged.py VIDEO ...

Without ``--other`` only this version is timed. On a shared machine compare CPU seconds; the load
average is printed before and after.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import sys
import time

import av

from reelforge.curate.stages import transcode as this
from reelforge.curate.stages.probe import probe_file


def spans(path: str, n: int = 4, seconds: float = 2.0) -> tuple[list[dict], str]:
    p = probe_file(path)
    with av.open(path) as c:
        ts = [f.time for f in c.decode(video=0)]
    per, rows = max(2, int(seconds * p["fps"])), []
    for k in range(n):
        a, b = k * per, min(len(ts), (k + 1) * per)
        if b - a < 2:
            break
        rows.append({"video_path": path, "start_frame": a, "end_frame": b, "start_pts": ts[a], "end_pts": ts[b - 1],
                     "rotation": p["rotation"], "sar": p["sar"], "src_fps": p["fps"], "status": "ok", "reason": ""})
    return rows, p["color"]


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--other", help="another transcode.py to time against this one")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("videos", nargs="+")
    args = ap.parse_args()
    versions = {"this": this}
    if args.other:
        spec = importlib.util.spec_from_file_location("other_transcode", args.other)
        other = importlib.util.module_from_spec(spec)
        sys.modules["other_transcode"] = other
        spec.loader.exec_module(other)
        versions["other"] = other
    print(f"load average {os.getloadavg()[0]:.1f}")
    for path in args.videos:
        rows, colour = spans(path)
        batch = {k: [r[k] for r in rows] for k in rows[0]}
        got = {name: [] for name in versions}
        for _ in range(args.repeats):
            for name, mod in versions.items():
                stage = mod.Transcode(mod.TranscodeConfig())
                c0, w0 = cpu(), time.time()
                stage(dict(batch))
                got[name].append((cpu() - c0, time.time() - w0))
        cells = "  ".join(f"{name} CPU {min(c for c, _ in v):.2f} s wall {min(w for _, w in v):.2f} s"
                          for name, v in got.items())
        print(f"{os.path.basename(path):28s} {colour:20s} {len(rows)} spans  {cells}")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
