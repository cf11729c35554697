import json

import numpy as np
import pytest
import torch

from streamchar.config import load_config
from streamchar.data.audio import write_wav
from streamchar.data.dataset import ClipDataset
from streamchar.data.mp4 import write_mp4
from streamchar.errors import StreamcharError


def test_synthtalk_items_are_aligned(small_set):
    root, cfg = small_set
    ds = ClipDataset(root, cfg)
    assert len(ds) == 6
    item = ds[0]
    t = item["video"].shape[0]
    assert item["video"].shape == (t, 3, 128, 128) and item["video"].dtype == torch.uint8
    assert item["audio"].shape == (t * cfg.samples_per_frame,)
    assert item["reference_image"].shape == (3, 128, 128)
    assert item["words"] and item["transcript"] and item["prompt"]
    assert item["words"][-1]["end"] <= t / 24


def test_split_filter(small_set):
    root, cfg = small_set
    splits = {ClipDataset(root, cfg)[i]["split"] for i in range(6)}
    for s in splits:
        assert all(item["split"] == s for item in ClipDataset(root, cfg, split=s))
    with pytest.raises(StreamcharError, match="unknown split 'dev'; accepted: train, val, test, test-unseen"):
        ClipDataset(root, cfg, split="dev")


def test_set_for_another_preset_is_refused(small_set):
    root, _ = small_set
    with pytest.raises(StreamcharError, match="video.height is 128 in the set but 512 in the config"):
        ClipDataset(root, load_config("paper"))


def test_real_data_folder_is_resized_and_resampled(tmp_path, tiny_cfg):
    rng = np.random.default_rng(0)
    frames = np.zeros((30, 96, 160, 3), np.uint8)
    frames[:, :, 32:128] = 200  # the centre square survives the crop
    t = np.arange(int(30 / 24 * 16000)) / 16000
    audio = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    write_mp4(tmp_path / "talk.mp4", frames, 24, audio, 16000)
    write_wav(tmp_path / "voice.wav", rng.uniform(-0.1, 0.1, 16000).astype(np.float32), 16000)
    (tmp_path / "talk.json").write_text(
        json.dumps({"transcript": "hello there", "words": [{"word": "hello", "start": 0.1, "end": 0.4}, {"word": "there", "start": 0.5, "end": 0.9}],
                    "reference_voice": "voice.wav"})
    )
    ds = ClipDataset(tmp_path, tiny_cfg)
    item = ds[0]
    assert item["video"].shape == (30, 3, 128, 128)
    assert item["video"].float().mean() > 180  # cropped to the bright centre
    assert item["audio"].shape == (30 * 1000,)
    spectrum = np.abs(np.fft.rfft(item["audio"].numpy()[2000:26000]))
    assert abs(np.argmax(spectrum) * 24000 / 24000 - 440) < 3
    assert item["reference_voice"].shape == (24000,)
    assert item["transcript"] == "hello there" and item["split"] == "train"  # a folder clip trains unless its JSON names a split
    assert len(ClipDataset(tmp_path, tiny_cfg, split="train")) == 1
    with pytest.raises(StreamcharError, match="no clips in .* for split 'val'"):
        ClipDataset(tmp_path, tiny_cfg, split="val")


def test_real_data_without_words_is_refused(tmp_path, tiny_cfg):
    write_mp4(tmp_path / "a.mp4", np.zeros((5, 32, 32, 3), np.uint8), 24, np.zeros(5000, np.float32), 24000)
    (tmp_path / "a.json").write_text(json.dumps({"transcript": "hi"}))
    with pytest.raises(StreamcharError, match="lacks 'words'"):
        ClipDataset(tmp_path, tiny_cfg)[0]


def test_empty_folder(tmp_path, tiny_cfg):
    with pytest.raises(StreamcharError, match="no clips in"):
        ClipDataset(tmp_path, tiny_cfg)
