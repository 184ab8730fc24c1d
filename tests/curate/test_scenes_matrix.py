"""Fast = exact: the fast shot reader finds the cuts a full decode finds (within a frame), on real
footage re-encoded across encoder settings (GOP length, keyframes at scene cuts or not, B-frames,
H.264 and HEVC, 160x90 to 1080p).

The fast reader skips frames on the strength of the compressed stream (GOP structure, packet
sizes, which frames are references); each setting here changes what it sees. Encoders put
keyframes at scene cuts, so a cut often starts a GOP: the case a randomised comparison on generated
clips (cuts inside GOPs) did not reach. The default run encodes a few small variants once per
session; ``-m slow`` runs the whole matrix.
"""
from __future__ import annotations

import itertools

import av
import pytest

from reelforge.curate.scenes import SceneConfig, detect_scenes

from scenes_reencode import SourceFrames, Variant  # tests/curate/, on sys.path under pytest

HEVC = "libx265" in av.codecs_available


def _close(fast: list[int], exact: list[int], tol: int = 1) -> bool:
    return len(fast) == len(exact) and all(abs(a - b) <= tol for a, b in zip(fast, exact))


class Matrix:
    """Encodes each (source, variant) once into a session folder; sources decoded once per size."""

    def __init__(self, media, out):
        self.media, self.out = media, out
        self._sources: dict = {}

    def path(self, source: str, v: Variant):
        p = self.out / f"{source.rsplit('.', 1)[0]}-{v.name}.mp4"
        if not p.exists():
            key = (source, v.size)
            if key not in self._sources:
                self._sources.clear()  # one source's frames in memory at a time
                self._sources[key] = SourceFrames(self.media / source, v.size)
            self._sources[key].encode(v, p)
        return str(p)

    def check(self, source: str, v: Variant) -> None:
        p = self.path(source, v)
        fast = detect_scenes(p, SceneConfig())
        exact = detect_scenes(p, SceneConfig(exact=True))
        assert fast.frames == exact.frames, p
        assert _close(fast.cuts, exact.cuts), (
            f"{source} {v.name}: fast {fast.cuts} vs exact {exact.cuts} "
            f"(fast only {sorted(set(fast.cuts) - set(exact.cuts))}, "
            f"exact only {sorted(set(exact.cuts) - set(fast.cuts))})")


@pytest.fixture(scope="session")
def matrix(shared_media, tmp_path_factory):
    return Matrix(shared_media, tmp_path_factory.mktemp("scenes_matrix"))


# the default run: the two settings of issue 12 that lost sintel_30s's cut at frame 286, and one of
# each other axis (no scene-cut keyframes, no B-frames, short and long GOPs, HEVC, another source)
DEFAULT = [
    ("sintel_trailer_30s.mp4", Variant(gop=50, size=(160, 90))),
    ("sintel_trailer_30s.mp4", Variant(gop=25, size=(320, 180))),
    ("sintel_trailer_30s.mp4", Variant(gop=50, bframes=0, scenecut=False, size=(160, 90))),  # lost 286
    ("sintel_trailer_30s.mp4", Variant(gop=250, scenecut=False, size=(160, 90))),  # lost 356
    ("sintel_trailer_30s.mp4", Variant(gop=250, size=(160, 90))),  # lost 523
    ("sintel_trailer_30s.mp4", Variant(gop=12, scenecut=False, size=(320, 180))),  # lost 356, 372
    ("psd_testvideo.mp4", Variant(gop=25, size=(160, 90))),
    ("psd_testvideo.mp4", Variant(gop=250, bframes=0, size=(160, 90))),  # lost 30, 180 (keyframes in a tail)
    ("sintel_trailer_10s.mp4", Variant(gop=12, bframes=0, size=(160, 90))),
]
if HEVC:
    DEFAULT.append(("sintel_trailer_30s.mp4", Variant("libx265", gop=25, bframes=0, size=(160, 90))))  # lost 286


@pytest.mark.parametrize("source,variant", DEFAULT, ids=[f"{s.split('.')[0]}-{v.name}" for s, v in DEFAULT])
def test_fast_cuts_equal_exact(matrix, source, variant):
    matrix.check(source, variant)


SOURCES = ["sintel_trailer_10s.mp4", "sintel_trailer_30s.mp4", "psd_testvideo.mp4",
           "psd_issue-195-aspect-ratio.mp4", "psd_issue-134-rotate.mp4", "decord_flipping_a_pancake.mkv"]
CODECS = ["libx264"] + (["libx265"] if HEVC else [])
SMALL = [(160, 90), (320, 180)]


def _full_matrix():
    """Every codec x GOP x B-frames x scene-cut setting at the small sizes, for every source;
    then 640x360 to 1080p on the two many-cut sources with x264's and x265's defaults and with a
    short, scene-cut-free GOP."""
    out = [(s, Variant(c, g, b, sc, size)) for s, size, c, g, b, sc in itertools.product(
        SOURCES, SMALL, CODECS, (12, 25, 50, 250), (0, 3), (True, False))]
    for s, size, c in itertools.product(("sintel_trailer_30s.mp4", "psd_testvideo.mp4"),
                                        ((640, 360), (1280, 720), (1920, 1080)), CODECS):
        out += [(s, Variant(c, 250, 3, True, size)), (s, Variant(c, 25, 3, False, size))]
    return out


FULL = _full_matrix()


@pytest.mark.slow
@pytest.mark.parametrize("source,variant", FULL, ids=[f"{s.split('.')[0]}-{v.name}" for s, v in FULL])
def test_fast_cuts_equal_exact_full_matrix(matrix, source, variant):
    matrix.check(source, variant)
