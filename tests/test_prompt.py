"""The umT5 prompt route (the paper preset's): a small random umT5 written with `save_pretrained`,
with a tokenizer saved beside it, loaded from its directory, and kept by a generator checkpoint."""

import pytest
import torch
from safetensors.torch import load_file

from streamchar.config import load_config
from streamchar.errors import StreamcharError
from streamchar.model.checkpoint import WEIGHTS, load_generator, new_generator, save_generator
from streamchar.model.prompt import TinyT5PromptEncoder, UMT5PromptEncoder

WORDS = ["a", "person", "talks", "in", "front", "of", "a", "wall", "with", "warm", "light", "and", "a", "calm", "face"]


def _write_umt5(directory, d_model: int = 128) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(dict.fromkeys(WORDS))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])  # umT5 ends a prompt with </s>
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>").save_pretrained(directory)
    torch.manual_seed(0)
    config = UMT5Config(vocab_size=len(vocab), d_model=d_model, d_kv=32, d_ff=2 * d_model, num_layers=2, num_heads=d_model // 32,
                        dropout_rate=0.0)  # fmt: skip
    UMT5EncoderModel(config).save_pretrained(directory)


@pytest.fixture(scope="module")
def umt5_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("umt5")
    _write_umt5(directory)
    return directory


def test_umt5_states_are_the_encoders_own_with_the_padding_zeroed(umt5_dir):
    from transformers import UMT5EncoderModel

    enc = UMT5PromptEncoder(umt5_dir, text_dim=128, tokens=16)
    prompts = ["a person talks in front of a wall", "a calm face"]
    states = enc(prompts)
    assert states.shape == (2, 16, 128)
    ids = enc.tokenizer(prompts[1], return_tensors="pt")["input_ids"]
    assert ids.shape[1] == 4  # three words and </s>
    direct = UMT5EncoderModel.from_pretrained(umt5_dir)(input_ids=ids).last_hidden_state[0]
    assert torch.allclose(states[1, :4], direct, atol=1e-5)
    assert torch.all(states[1, 4:] == 0) and torch.all(states[0, :8].abs().sum(-1) > 0)
    assert not any(p.requires_grad for p in enc.parameters())
    long = enc([" ".join(WORDS * 3)])
    assert long.shape == (1, 16, 128) and torch.all(long.abs().sum(-1) > 0)  # cut at 16 tokens


def test_umt5_mismatches_are_named(umt5_dir, tmp_path):
    with pytest.raises(StreamcharError, match="dit.text_dim"):
        UMT5PromptEncoder(umt5_dir, text_dim=4096, tokens=16)
    with pytest.raises(StreamcharError, match="no umT5 encoder"):
        UMT5PromptEncoder(tmp_path, text_dim=128, tokens=16)
    with pytest.raises(StreamcharError, match="prompt.directory"):
        load_config("tiny", {"prompt": {"encoder": "umt5"}})
    cfg = load_config("tiny", {"prompt": {"encoder": "umt5", "directory": "umt5"}})
    with pytest.raises(StreamcharError, match="absolute path"):
        new_generator(cfg)  # a relative directory needs a checkpoint's folder


def test_a_checkpoint_keeps_its_umt5_beside_its_weights(umt5_dir, tmp_path):
    cfg = load_config("tiny", {"prompt": {"encoder": "umt5", "tokens": 24, "directory": str(umt5_dir)}})
    model, prompt = new_generator(cfg, seed=0)
    assert isinstance(prompt, UMT5PromptEncoder)
    before = prompt(["a calm face"])
    # referenced by an absolute path: nothing copied, no prompt weights in the checkpoint
    save_generator(tmp_path / "ref", model, prompt)
    assert not any(k.startswith("prompt.") for k in load_file(tmp_path / "ref" / WEIGHTS)) and not (tmp_path / "ref" / "umt5").exists()
    _, again, _ = load_generator(tmp_path / "ref")
    assert torch.equal(again(["a calm face"]), before)
    # kept inside the checkpoint's folder (as the paper preset does): written there, and loaded from there
    inside = load_config("tiny", {"prompt": {"encoder": "umt5", "tokens": 24, "directory": "umt5"}})
    model.cfg = inside
    save_generator(tmp_path / "own", model, prompt)
    assert (tmp_path / "own" / "umt5" / "config.json").is_file()
    loaded, own, _ = load_generator(tmp_path / "own")
    assert own.directory == tmp_path / "own" / "umt5" and torch.equal(own(["a calm face"]), before)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_presets_name_their_prompt_encoders():
    paper, tiny = load_config("paper"), load_config("tiny")
    assert (paper.prompt.encoder, paper.prompt.tokens, paper.prompt.directory) == ("umt5", 512, "umt5")
    assert (tiny.prompt.encoder, tiny.prompt.tokens) == ("t5", 160)
    assert isinstance(new_generator(tiny)[1], TinyT5PromptEncoder)
