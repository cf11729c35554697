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
