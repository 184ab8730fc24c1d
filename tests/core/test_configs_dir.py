"""The YAML files in configs/ mirror the dataclasses: they load without error, and the default build
config is exactly the dataclass defaults (so the file documents what runs)."""
from pathlib import Path

import pytest

from reelforge.config import load_config
from reelforge.curate.pipeline import BuildConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_default_build_config_is_the_dataclass_defaults():
    assert load_config(BuildConfig, CONFIGS / "build" / "default.yaml") == BuildConfig()


@pytest.mark.parametrize("path", sorted((CONFIGS / "build").glob("*.yaml")), ids=lambda p: p.name)
def test_every_build_config_loads(path):
    load_config(BuildConfig, path)


def test_cli_override_error_names_the_key(capsys):
    from reelforge.cli import main

    rc = main(["build", str(CONFIGS / "build" / "default.yaml"), "--input", "x", "--output", "/tmp/unused",
               "--set", "curate.split.min_secs=2"])
    assert rc == 2
    assert "curate.split.min_secs" in capsys.readouterr().err
