"""Hard cuts on real files that GROUND_TRUTH.json leaves out, checked against PySceneDetect and by eye.

psd_issue-236-split-copy.mkv (1080p H.264, 48 frames) has one hard cut at frame 19: PySceneDetect's
ContentDetector reports it (0.792 s), and the mean absolute difference of consecutive 96x54 frames jumps
from ~9 to 38.6 there, with different content on each side. A detector that skips it hands the
transcoder a clip that spans two shots. The shot after it is animated on twos over a pan, so the local
level of change is high (steps alternate ~9 / ~12): the jump is only ~3.4x that level, but the layout
change (1 - luma correlation) is 0.94 against ~0.18 for the frames around it.

sintel_trailer_30s.mp4 has a hard cut at frame 356 (shot of the girl swinging her sword → the man with
the spear seen from behind), 8 frames after the cut at 348: both reference detectors miss it (grey
snow on both sides: PySceneDetect's HSV score stays under 27 even with min_scene_len=1), so it is not
in the union; test_scenes.py's precision check counts it as found through SHARED_CUTS_OUTSIDE_UNION.
"""
from reelforge.curate.scenes import SceneConfig, detect_scenes

# real hard cuts missing from GROUND_TRUTH.json's union, verified frame by frame (see above)
SHARED_CUTS_OUTSIDE_UNION = {"psd_issue-236-split-copy.mkv": [19], "sintel_trailer_30s.mp4": [356]}


def test_cut_in_short_1080p_mkv(shared_media):
    result = detect_scenes(str(shared_media / "psd_issue-236-split-copy.mkv"), SceneConfig())
    assert any(abs(c - 19) <= 2 for c in result.cuts), (result.cuts, result.transitions)


def test_cuts_outside_reference_union_found_exact_and_fast(shared_media):
    for name, cuts in SHARED_CUTS_OUTSIDE_UNION.items():
        for exact in (False, True):
            result = detect_scenes(str(shared_media / name), SceneConfig(exact=exact))
            for cut in cuts:
                assert any(abs(c - cut) <= 2 for c in result.cuts), (name, exact, result.cuts)


def test_cut_at_chunk_boundary_into_motion_found_fast(shared_media):
    """psd_issue-195-aspect-ratio.mp4: PySceneDetect finds [70, 170, 301, 421, 484], all at keyframes.
    After 421 the picture moves: the fast path once saw it only through 4-frame P gaps (a level of 15
    against 4.3 frame to frame) and dropped the cut that decoding every frame finds."""
    path = str(shared_media / "psd_issue-195-aspect-ratio.mp4")
    fast = detect_scenes(path, SceneConfig())
    assert fast.cuts == detect_scenes(path, SceneConfig(exact=True)).cuts == [70, 170, 301, 421, 484]
