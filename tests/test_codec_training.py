"""Codec training (`streamchar codec train`): which flags may go together, what a decoder-only
and an anchored run keep, and the temporal loss. The training runs are in the slow tier."""

import json

import pytest
import torch

from streamchar.codecs.store import load_codec
from streamchar.config import load_config
from streamchar.errors import StreamcharError


@pytest.mark.slow
def test_decoder_only_training_keeps_the_encoder_and_its_latents(small_set, tmp_path):
    from streamchar.training.codec_training import CodecSettings, train_codec

    root, cfg = small_set
    base = dict(batch=2, lr=1e-3, save_every=2, log_every=1, max_clips=2, threads=2)
    train_codec("video", root, tmp_path / "run-a", tmp_path / "a", cfg, CodecSettings(steps=2, **base))
    a = load_codec(tmp_path / "a")
    train_codec("video", root, tmp_path / "run-b", tmp_path / "b", cfg, CodecSettings(steps=2, init=str(tmp_path / "a"), decoder_only=True, **base))
    b = load_codec(tmp_path / "b")
    sa, sb = a.state_dict(), b.state_dict()
    kept = [k for k in sa if k.startswith(("enc.", "latents_"))]
    assert kept and all(torch.equal(sa[k], sb[k]) for k in kept)  # cached latents stay valid
    assert any(not torch.equal(sa[k], sb[k]) for k in sa if k.startswith("dec."))
    meta = json.loads((tmp_path / "b" / "config.json").read_text())
    assert meta["stage"] == "decoder" and meta["decoder_only_from"] == str(tmp_path / "a")
    assert (tmp_path / "b" / "video-train_log.jsonl").is_file()  # the encoder's training record comes along
    # decoders that read the reference image, and the latent before each one, trained onto the same encoder
    for name, extra, reads, new_out in (("d", {"reference": True}, "needs_reference", "ref_fuse.0.out.weight"),
                                        ("f", {"previous_latent": True}, "reads_previous", "prev_in.2.weight"),
                                        ("g", {"previous_latent": True, "frame_blend": True, "seam_loss": 1.0}, "reads_previous_frame",
                                         "blend_gates.2.weight")):  # fmt: skip
        train_codec("video", root, tmp_path / f"run-{name}", tmp_path / name, cfg,
                    CodecSettings(steps=2, init=str(tmp_path / "a"), decoder_only=True, **extra, **base))
        codec = load_codec(tmp_path / name)
        sd = codec.state_dict()
        assert getattr(codec, reads) and all(torch.equal(sa[k], sd[k]) for k in kept)
        assert sd[new_out].abs().sum() > 0  # the new input's last layer started at zero; left there, it would read nothing
    # onto the blending decoder: the gates toward the next latent, trained with the forward gates alone
    gates = dict(decoder_only=True, previous_latent=True, frame_blend=True, blend_next=True, seam_loss=1.0)
    train_codec("video", root, tmp_path / "run-i", tmp_path / "i", cfg, CodecSettings(steps=2, init=str(tmp_path / "g"), **gates, **base))
    sg, si = load_codec(tmp_path / "g").state_dict(), load_codec(tmp_path / "i").state_dict()
    assert load_codec(tmp_path / "i").reads_next_frame and all(torch.equal(sg[k], si[k]) == (not k.startswith("blend_gates.")) for k in sg)
    assert si["blend_back_gates.2.weight"].abs().sum() > 0
    # and then both again, trained for blending the first frames a second time
    train_codec("video", root, tmp_path / "run-j", tmp_path / "j", cfg,
                CodecSettings(steps=2, init=str(tmp_path / "i"), reblend=True, **gates, **base))
    j = load_codec(tmp_path / "j")
    sj = j.state_dict()
    assert j.reblends and all(torch.equal(si[k], sj[k]) == (not k.startswith(("blend_gates.", "blend_back_gates."))) for k in si)


@pytest.mark.parametrize(("kind", "flags", "error"), [
    ("video", {"decoder_only": True}, "--decoder-only needs --init too"),
    ("audio", {"reference": True}, "--reference, --previous-latent, --frame-blend, --blend-next, --reblend, --seam-loss are for the video codec"),
    ("video", {"frame_blend": True, "decoder_only": True, "init": "tiny-video"}, "--frame-blend needs --previous-latent too"),
    ("video", {"frame_blend": True, "previous_latent": True, "init": "tiny-video"}, "--frame-blend needs --decoder-only too"),
    ("video", {"blend_next": True, "previous_latent": True, "decoder_only": True, "init": "tiny-video"}, "--blend-next needs --frame-blend too"),
    ("video", {"reblend": True, "frame_blend": True, "previous_latent": True, "decoder_only": True, "init": "tiny-video"},
     "--reblend needs --blend-next too"),
    ("video", {"seam_loss": 1.0, "previous_latent": True}, "--seam-loss needs --frame-blend too"),
    ("video", {"seam_loss": -1.0}, "--seam-loss is a weight, at least 0; got -1"),
    ("video", {"anchor": 1.0}, "--anchor needs --init too"),
    ("video", {"anchor": 1.0, "decoder_only": True, "init": "tiny-video"}, "--anchor holds a training encoder near --init's: not with"),
    ("video", {"anchor": -1.0, "init": "tiny-video"}, "--anchor is a weight, at least 0; got -1"),
    ("video", {"mouth_crops": 1.5}, "--mouth-crops in \\[0, 1\\]"),
    ("video", {"steps": 0}, "--steps, --batch and --lr must be positive"),
    ("image", {}, "unknown codec kind 'image'"),
])  # fmt: skip
def test_training_flags_are_checked_first(tmp_path, kind, flags, error):
    from streamchar.training.codec_training import CodecSettings, train_codec

    settings = CodecSettings(**{"steps": 1, "batch": 2, "lr": 1e-3, **flags})
    with pytest.raises(StreamcharError, match=error):  # before the data is read: there is none here
        train_codec(kind, tmp_path / "no-data", tmp_path / "run", tmp_path / "out", load_config("tiny"), settings)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_anchored_training_moves_the_encoder_and_keeps_the_statistics(small_set, tmp_path):
    from streamchar.training.codec_training import CodecSettings, train_codec

    root, cfg = small_set
    base = dict(batch=2, lr=1e-3, save_every=2, log_every=1, max_clips=2, threads=2)
    for kind in ("video", "audio"):
        train_codec(kind, root, tmp_path / f"run-{kind}", tmp_path / kind, cfg, CodecSettings(steps=1, **base))
        train_codec(kind, root, tmp_path / f"run-{kind}-anchored", tmp_path / f"{kind}-anchored", cfg,
                    CodecSettings(steps=3, init=str(tmp_path / kind), anchor=1.0, **base))
        sa, sb = load_codec(tmp_path / kind).state_dict(), load_codec(tmp_path / f"{kind}-anchored").state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in ("latents_mean", "latents_std"))  # the normalisation models learned stays
        assert any(not torch.equal(sa[k], sb[k]) for k in sa if k.startswith("enc."))
        log = [json.loads(line) for line in (tmp_path / f"run-{kind}-anchored" / "train_log.jsonl").read_text().splitlines()]
        assert log[0]["drift"] == 0 and log[-1]["drift"] > 0  # the first step starts at init's latents, the next have moved
        meta = json.loads((tmp_path / f"{kind}-anchored" / "config.json").read_text())
        assert meta["anchored_to"] == str(tmp_path / kind) and meta["anchor"] == 1.0


def test_temporal_loss_sees_a_decode_that_moves_in_steps():
    from streamchar.training.codec_losses import temporal_loss

    torch.manual_seed(3)
    x = torch.randn(4, 12, 8, 8).cumsum(dim=1) * 0.1  # frames that drift from one to the next
    before = x.reshape(4, 4, 3, 8, 8)[:, 0] - 0.05
    mask, first, has = torch.zeros(4, 12, 8, 8), torch.tensor([0, 0, 3, 0]), torch.ones(4, dtype=torch.bool)
    mask[:, :, 2:4, 2:4] = 1
    exact, _ = temporal_loss(x, x, mask, first, before, before, has)
    assert exact.item() == 0.0
    shifted, _ = temporal_loss(x + 0.3, x, mask, first, before + 0.3, before, has)  # the same error everywhere: no step
    assert shifted.item() < 1e-10
    held = x.reshape(4, 4, 3, 8, 8)[:, :1].expand(4, 4, 3, 8, 8).reshape(4, 12, 8, 8)  # still inside a group, a jump between
    stepped, parts = temporal_loss(held, x, mask, first, before, before, has)
    assert stepped.item() > 1e-3 and parts["change_inside"] > 0
    none, _ = temporal_loss(x, x, mask, first, before + 1.0, before, torch.zeros(4, dtype=torch.bool))
    assert none.item() == 0.0  # no group before: no step to measure
