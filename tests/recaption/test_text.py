"""Templates and post-processing: cleaning, failure reasons, the one retry with other settings."""
from __future__ import annotations

import pytest

from reelforge.recaption.captioner import Clip, Generated, GenerationSettings
from reelforge.recaption.postprocess import caption_with_retry, clean, failure_reason
from reelforge.recaption.templates import load_template

GOOD = ("A red car drives along a coastal road at sunset while the camera pans slowly to the left. "
        "Warm light falls over the sea.")


def test_templates_load_with_a_hash_of_their_text(tmp_path):
    dense, short = load_template("dense-v1"), load_template("short-v1")
    assert dense.id == "dense-v1" and "camera motion" in dense.prompt and dense.hash != short.hash
    edited = tmp_path / "dense-v1.yaml"
    edited.write_text(f"id: dense-v1\nsystem: {dense.system!r}\nprompt: {dense.prompt + ' Be brief.'!r}\n")
    assert load_template(edited).id == "dense-v1" and load_template(edited).hash != dense.hash
    msgs = dense.messages([{"type": "video"}])
    assert [m["role"] for m in msgs] == ["system", "user"] and msgs[1]["content"][0] == {"type": "video"}
    (tmp_path / "bad.yaml").write_text("prompt: hi\nsytem: typo\n")
    with pytest.raises(ValueError, match="sytem"):
        load_template(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError, match="dense-v1"):
        load_template("no-such-template")


@pytest.mark.parametrize("raw, want", [
    ("The video shows a red car. A red car.  It turns **left**.", "A red car. It turns left."),
    ("In this video, the clip shows a cat on a mat.", "A cat on a mat."),
    ("Here is a detailed description of the video: two dogs run.", "Two dogs run."),
    ("  A dancer spins.\n\nA dancer spins. The light dims. ", "A dancer spins. The light dims."),
])
def test_clean(raw, want):
    assert clean(raw) == want


def test_failure_reasons():
    assert failure_reason("") == "empty output"
    assert failure_reason("two words") == "too short (2 words)"
    assert failure_reason("I'm sorry, but I cannot describe this video for you.") == "refusal"
    assert failure_reason("the dog runs " * 20).startswith("looping")
    assert failure_reason(GOOD) is None


def test_unusable_captions_are_retried_once_with_the_retry_settings():
    first, retry = GenerationSettings(), GenerationSettings(do_sample=True, repetition_penalty=1.3)
    answers = {("a", False): "The video shows " + GOOD, ("b", False): "", ("b", True): GOOD,
               ("c", False): "I cannot help with that request, sorry.", ("c", True): "loop " * 40}
    calls = []

    def generate(clips, settings):
        calls.append(([c.clip_id for c in clips], settings))
        return [Generated(answers[(c.clip_id, settings.do_sample)], 7) for c in clips]

    clips = [Clip(k, None, 2.0) for k in "abc"]
    out = {r.clip_id: r for r in caption_with_retry(generate, clips, first, retry)}
    assert calls == [(["a", "b", "c"], first), (["b", "c"], retry)]
    assert (out["a"].status, out["a"].text, out["a"].attempts, out["a"].tokens) == ("ok", GOOD, 1, 7)
    assert (out["b"].status, out["b"].attempts, out["b"].tokens) == ("ok", 2, 14)
    assert out["c"].status == "failed" and out["c"].text is None
    assert out["c"].reason == "refusal; retry: looping output (repeated phrases)"
