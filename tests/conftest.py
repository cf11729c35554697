import pytest

from streamchar.config import load_config
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
