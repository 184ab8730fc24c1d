"""Thumbnails: area averages of the decoder's planes (numpy; OpenCV's INTER_AREA before, same bytes)."""
from __future__ import annotations

import av
import numpy as np
import pytest

from reelforge.curate.scenes.thumbs import THUMB_H, THUMB_W, thumbnail


def _frame(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> av.VideoFrame:
    h, w = y.shape
    return av.VideoFrame.from_ndarray(np.concatenate([y, u.reshape(h // 4, w), v.reshape(h // 4, w)]),
                                      format="yuv420p")


def _planes(h: int, w: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    # smooth picture + noise: rounding ties and every level occur
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 90 * np.sin(xx / (w / 7.0)) * np.cos(yy / (h / 5.0))
    y = np.clip(base + rng.normal(0, 20, (h, w)), 0, 255).astype(np.uint8)
    u = rng.integers(0, 256, (h // 2, w // 2), dtype=np.uint8)
    v = np.clip(base[::2, ::2] / 2 + 60, 0, 255).astype(np.uint8)
    return y, u, v


def _split(t: np.ndarray) -> tuple[np.ndarray, ...]:
    ny, nc = THUMB_W * THUMB_H, (THUMB_W // 2) * (THUMB_H // 2)
    return (t[:ny].reshape(THUMB_H, THUMB_W), t[ny:ny + nc].reshape(THUMB_H // 2, THUMB_W // 2),
            t[ny + nc:].reshape(THUMB_H // 2, THUMB_W // 2))


@pytest.mark.parametrize("h,w", [(1080, 1920), (720, 1280), (480, 854), (360, 642)])
def test_large_planes_average_4x4_evenly_spread_pixels(h, w):
    """Each thumbnail pixel is the mean of 4x4 pixels spread evenly over its block (rows and
    columns i * size // (4 n)), rounded half to even: what INTER_AREA gave on the sampled plane."""
    planes = _planes(h, w, 0)
    got = _split(thumbnail(_frame(*planes)))
    for img, out in zip(planes, got):
        n_h, n_w = out.shape
        r = np.arange(4 * n_h) * img.shape[0] // (4 * n_h)
        c = np.arange(4 * n_w) * img.shape[1] // (4 * n_w)
        ref = img[np.ix_(r, c)].reshape(n_h, 4, n_w, 4).astype(np.float64).mean(axis=(1, 3))
        np.testing.assert_array_equal(out, np.rint(ref).astype(np.uint8))


@pytest.mark.parametrize("h,w", [(96, 160), (60, 100)])
def test_small_planes_are_exact_area_averages(h, w):
    """Under 4x the thumbnail: the true area average over fractional pixels (within rounding).
    Reference: upsample by whole factors until the thumbnail divides the plane, then block means."""
    planes = _planes(h, w, 1)
    got = _split(thumbnail(_frame(*planes)))
    for img, out in zip(planes, got):
        n_h, n_w = out.shape
        fy, fx = n_h // np.gcd(img.shape[0], n_h), n_w // np.gcd(img.shape[1], n_w)
        up = np.repeat(np.repeat(img.astype(np.float64), fy, 0), fx, 1)
        ref = up.reshape(n_h, up.shape[0] // n_h, n_w, up.shape[1] // n_w).mean(axis=(1, 3))
        assert np.abs(out.astype(np.float64) - ref).max() <= 0.5 + 1e-9


def test_fine_detail_is_averaged_not_aliased():
    """A one-pixel checkerboard at 1080p is mid-grey in the thumbnail: point-sampling at the
    thumbnail's stride (30 pixels, even) would read a single colour of it."""
    yy, xx = np.mgrid[0:1080, 0:1920]
    y = np.where((yy + xx) % 2 == 0, 16, 235).astype(np.uint8)
    c = np.full((540, 960), 128, np.uint8)
    luma = _split(thumbnail(_frame(y, c, c)))[0].astype(np.float64)
    assert np.abs(luma - (16 + 235) / 2).max() <= 1.0
