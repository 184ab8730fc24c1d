"""The shipped configs travel in the wheel, and an installed reelforge finds its defaults without a
source tree (``reelforge build`` with no config, the caption job, the prompt templates)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# what the wheel is built from (a copy, so setuptools' build/ and egg-info stay out of the checkout)
SOURCES = ("pyproject.toml", "README.md", "reelforge", "curate", "recaption", "shards", "train", "configs")


def test_wheel_ships_the_configs_and_an_install_uses_them(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(src)], check=True, capture_output=True, timeout=180)
    (wheel,) = wheels.glob("reelforge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {str(p.relative_to(ROOT / "configs")) for p in (ROOT / "configs").rglob("*.yaml")}
    assert shipped and {f"reelforge/configs/{p}" for p in shipped} <= names

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=180)
    # run from an empty folder with the installed copy first on the path: no checkout to fall back on
    probe = (
        "import reelforge.configs as c, reelforge.cli as cli\n"
        "from reelforge.config import load_config\n"
        "from reelforge.curate.pipeline import BuildConfig\n"
        "from reelforge.recaption.templates import TEMPLATE_DIR\n"
        "from reelforge.recaption.cli import DEFAULT_CONFIG\n"
        "args = cli.build_parser().parse_args(['build', '--input', 'x', '--output', 'y'])\n"
        "assert load_config(BuildConfig, args.config) == BuildConfig()\n"
        "print(c.__file__); print(args.config); print(TEMPLATE_DIR); print(DEFAULT_CONFIG)\n")
    run = tmp_path / "elsewhere"
    run.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-c", probe], cwd=run, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    paths = [Path(line) for line in out.stdout.split()]
    assert len(paths) == 4
    for p in paths:
        assert site in p.parents, p  # the installed copy, not the checkout
        assert p.exists(), p
