import json

import pytest
import torch

from streamchar.codecs.tiny import TinyAudioCodec, TinyAudioConfig, TinyVideoCodec, TinyVideoConfig
from streamchar.config import load_config
from streamchar.data.latents import encode_dataset
from streamchar.data.synth import synthesize_set


@pytest.fixture(scope="session")
def tiny_cfg():
    return load_config("tiny")


@pytest.fixture(scope="session")
def small_set(tmp_path_factory, tiny_cfg):
    """Six short clips, made once for the whole session (single process, deterministic)."""
    root = tmp_path_factory.mktemp("synthtalk") / "set"
    cfg = load_config("tiny", {"synthtalk": {"max_sentences": 2, "unseen_fraction": 0.2, "test_fraction": 0.2, "val_fraction": 0.0}})
    synthesize_set(root, 6, 7, cfg, workers=1)
    return root, cfg


@pytest.fixture(scope="session")
def cache(small_set, tmp_path_factory):
    """A latent cache of the small set made with small random codecs; every clip counts as training data."""
    root, cfg = small_set
    torch.manual_seed(0)
    video = TinyVideoCodec(TinyVideoConfig(encoder_channels=(8, 8, 8, 8), decoder_channels=(8, 8, 8, 8))).eval()
    audio = TinyAudioCodec(TinyAudioConfig(channels=(16, 16))).eval()
    out = tmp_path_factory.mktemp("cache") / "latents"
    encode_dataset(root, out, cfg, video, audio, {"video": "small", "audio": "small"})
    # every clip of the small set counts as training data here
    meta = json.loads((out / "latents.json").read_text())
    for r in meta["clips"]:
        r["split"] = "train"
    (out / "latents.json").write_text(json.dumps(meta))
    return out


@pytest.fixture(scope="session")
def plan_session():
    """A factory: for a config, a function making a 1-step session with a random tiny model and
    small random codecs on a text (the reader under test is the config's)."""
    return make_plan_session


def make_plan_session(cfg):
    import numpy as np

    from streamchar.model.checkpoint import new_generator
    from streamchar.streaming.engine import SessionSettings, StreamSession
    from streamchar.streaming.inputs import StreamRequest

    torch.set_num_threads(2)
    model, prompt = new_generator(cfg, seed=0)
    torch.manual_seed(1)
    video = TinyVideoCodec(TinyVideoConfig(encoder_channels=(8, 8, 8, 8), decoder_channels=(8, 8, 8, 8))).eval()
    audio = TinyAudioCodec(TinyAudioConfig(channels=(16, 16))).eval()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    voice = (0.1 * rng.standard_normal(2 * cfg.audio.sample_rate)).astype(np.float32)

    def session(text, **settings):
        request = StreamRequest(text, image, voice, "a person talks")
        return StreamSession(model.eval(), prompt, video, audio, request, SessionSettings(steps=1, **settings))

    return session


# live server ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def shipped_pipeline():
    """The shipped generator (the tiny student) with its codecs, loaded once."""
    from streamchar.streaming.pipeline import Pipeline

    return Pipeline.load()


@pytest.fixture
def live_server(shipped_pipeline):
    """Start a real uvicorn on a free loopback port with `ServerState(settings, token)`, warmed
    up; yields (base URL, state). Every server started is stopped at the end of the test."""
    import socket
    import threading
    import time

    import uvicorn

    from streamchar.serving.app import create_app
    from streamchar.serving.settings import ServerSettings
    from streamchar.serving.state import ServerState

    servers = []

    def start(token=None, **limits):
        # a fixed limit: no start-up measurement; no refusals for being behind, which 2 shared cores reach now and then (tested on its own)
        state = ServerState(shipped_pipeline, ServerSettings(**{"max_sessions": 4, "behind_hold_seconds": 0, **limits}), token)
        state.warm_up()  # ready (/api/ready) before the first request, as `streamchar serve` is before it admits one
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config = uvicorn.Config(create_app(state), host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio",
                                ws_max_size=state.settings.max_message_bytes)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        servers.append((server, thread))
        return f"127.0.0.1:{port}", state

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=30)
