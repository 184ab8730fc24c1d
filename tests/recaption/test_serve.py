"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 serving the tiny model
(recaption.serve), started and stopped here: same captions as the local captioner, concurrent requests
batched, bad requests answered 400, an unreachable endpoint recorded as failed after its retries."""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest

from reelforge.recaption.captioner import Captioner, CaptionerConfig, Clip, GenerationSettings
from reelforge.recaption.openai_backend import OpenAICaptioner, OpenAIConfig
from reelforge.recaption.serve import CaptionServer
from reelforge.recaption.templates import load_template

SETTINGS = GenerationSettings(max_new_tokens=8, min_new_tokens=8)


@pytest.fixture(scope="module")
def server(tiny_vlm):
    captioner = Captioner(CaptionerConfig(model=str(tiny_vlm), batch_size=4), load_template("dense-v1"))
    srv = CaptionServer(captioner, "127.0.0.1", 0, model_name="tiny").start()
    yield srv
    srv.stop()


def _clips(n):
    rng = np.random.default_rng(1)
    return [Clip(f"k{i}", rng.integers(0, 255, (4, 56, 56, 3), np.uint8), 2.0) for i in range(n)]


def test_http_backend_serves_the_local_model(server):
    client = OpenAICaptioner(OpenAIConfig(base_url=server.url, model="tiny", concurrency=4, timeout_s=60),
                             load_template("dense-v1"), SETTINGS, SETTINGS)
    clips = _clips(4)
    out = client.generate(clips, SETTINGS)
    assert all(g.error is None and g.tokens == 8 for g in out)
    # the frames went over the wire as JPEG, so compare with the local captioner on the decoded frames
    from reelforge.recaption.serve import decode_data_url
    from reelforge.recaption.openai_backend import frame_data_url
    local = server.captioner.generate([Clip(c.clip_id, np.stack([decode_data_url(frame_data_url(f)) for f in c.frames]),
                                            c.fps) for c in clips], SETTINGS)
    assert [g.text for g in out] == [g.text for g in local]
    models = json.loads(urllib.request.urlopen(server.url + "/models", timeout=10).read())
    assert models["data"][0]["id"] == "tiny"


def test_bad_requests_get_400(server):
    req = urllib.request.Request(server.url + "/chat/completions", method="POST",
                                 data=json.dumps({"messages": [{"role": "user", "content": "no images"}]}).encode())
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400 and b"image_url" in err.value.read()


def test_unreachable_endpoint_is_a_recorded_failure():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAICaptioner(OpenAIConfig(base_url=f"http://127.0.0.1:{port}/v1", retries=1, backoff_s=0.01,
                                          timeout_s=2), load_template("dense-v1"), SETTINGS, SETTINGS)
    out = client.generate(_clips(2), SETTINGS)
    assert all(g.text == "" and g.error.startswith("server unreachable after 2 tries") for g in out)
