"""reelforge: an open video-data engine for text-to-video models."""

# PyAV must be loaded before decord: decord's wheel bundles an old libvpx whose symbols, once loaded,
# shadow PyAV's and make the VP9 encoder fail to open ("Invalid argument"). Importing av here puts
# PyAV's libraries first in every process that touches reelforge.
import av  # noqa: F401,E402

__version__ = "0.1.0"
