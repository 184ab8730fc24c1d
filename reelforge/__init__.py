"""reelforge: an open video-data engine for text-to-video models.

Nothing heavy is imported here: `reelforge --help` must start fast. One ordering rule for the code
below it: PyAV must be loaded before decord. decord's wheel bundles an old libvpx whose symbols,
once loaded, shadow PyAV's and make the VP9 encoder fail to open ("Invalid argument"); so whatever
imports decord imports av first (shards/members.py, tests/conftest.py).
"""

__version__ = "0.1.0"
