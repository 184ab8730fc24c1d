from __future__ import annotations

import json

from reelforge.curate.scenes.cli import main
from reelforge.samples import ShotSpec, VideoSpec, render_video


def test_cli_json_one_object_per_video_and_failures_continue(tmp_path, capsys):
    spec = VideoSpec("two", [ShotSpec(30, "stripes", (200, 40, 40)), ShotSpec(30, "noise", (40, 40, 200))],
                     width=160, height=120, fps=25)
    good = str(render_video(spec, tmp_path))
    rc = main(["--json", str(tmp_path / "missing.mp4"), good])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rc == 1 and len(lines) == 2
    assert lines[0]["status"] == "failed" and lines[0]["reason"]
    assert lines[1]["status"] == "ok" and lines[1]["frames"] == 60 and lines[1]["fps"] == 25.0
    assert lines[1]["scene_starts"] == [30] and lines[1]["scene_starts_seconds"] == [1.2]


def test_scenes_process_imports_only_what_detection_needs(tmp_path):
    """`reelforge scenes` is compared with PySceneDetect as a whole process (issue 12), so its
    start-up counts: no torch or Ray, not fsspec (~0.15 s of CPU), which only the build's error
    handling and URL inputs need, and not OpenCV (~0.14 s: thumbnails are numpy)."""
    import subprocess
    import sys

    spec = VideoSpec("one", [ShotSpec(12, "stripes", (200, 40, 40))], width=64, height=48, fps=25)
    video = str(render_video(spec, tmp_path))
    probe = ("import sys\nfrom reelforge.cli import main\nrc = main(['scenes', '--json', sys.argv[1]])\n"
             "print('LOADED', *[m for m in ('torch', 'ray', 'fsspec', 'transformers', 'cv2') if m in sys.modules])\n"
             "sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", probe, video], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert json.loads(out[0])["status"] == "ok"
    assert out[-1].split()[1:] == []
