"""Fixtures for the shards tests; the builders live in shard_fixtures.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from shard_fixtures import TEST_BUCKETS, standard_clips, write_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    from reelforge.shards.index import build_index
    clips, images = standard_clips()
    root = write_dataset(tmp_path_factory.mktemp("ds") / "tiny", clips, shard_sizes=[1, 9, 3, 2, 11, 3], images=images)
    build_index(root, TEST_BUCKETS)
    return root
