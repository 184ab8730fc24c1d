from dataclasses import dataclass, field
from typing import Literal

import pytest

from reelforge.config import ConfigError, dump_config, load_config, parse_override


@dataclass
class Inner:
    min_seconds: float = 1.0
    frames: int = 8
    mode: Literal["content", "transnetv2"] = "content"
    tags: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.min_seconds < 0:
            raise ValueError(f"min_seconds must be >= 0, got {self.min_seconds}")


@dataclass
class Outer:
    split: Inner = field(default_factory=Inner)
    name: str = "x"
    enabled: bool = True


def test_yaml_and_dotted_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("split:\n  min_seconds: 2\n  tags: [a, b]\nname: demo\n")
    cfg = load_config(Outer, p, ["split.frames=16", "enabled=false", "split.mode=transnetv2"])
    assert cfg.split.min_seconds == 2.0 and isinstance(cfg.split.min_seconds, float)
    assert cfg.split.frames == 16 and cfg.enabled is False and cfg.split.mode == "transnetv2"
    assert cfg.split.tags == ["a", "b"] and cfg.name == "demo"


def test_unknown_key_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"split\.min_secs"):
        load_config(Outer, None, ["split.min_secs=2"])
    p = tmp_path / "c.yaml"
    p.write_text("splt:\n  frames: 2\n")
    with pytest.raises(ConfigError, match="splt"):
        load_config(Outer, p)


@pytest.mark.parametrize("override, key", [
    ("split.frames=many", "split.frames"),
    ("split.mode=fast", "split.mode"),
    ("enabled=maybe", "enabled"),
    ("split=3", "split"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(Outer, None, [override])


def test_validation_in_post_init_is_reported():
    with pytest.raises(ConfigError, match="min_seconds must be >= 0"):
        load_config(Outer, None, ["split.min_seconds=-1"])


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError):
        parse_override("no-equals-sign")
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "missing.yaml")


def test_dump_round_trip(tmp_path):
    cfg = load_config(Outer, None, ["split.frames=3"])
    dump_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(Outer, tmp_path / "resolved.yaml") == cfg
