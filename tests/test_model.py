"""The model: Wan/Qwen2 weight compatibility and the paper's mechanisms (asymmetric mask with
cached condition keys/values, modality-aware RoPE, the pointer)."""

import json

import pytest
import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

from streamchar.config import load_config
from streamchar.config.schema import DiTConfig
from streamchar.diffusion.flow import TIMESTEP_SCALE, sample_times
from streamchar.errors import StreamcharError
from streamchar.model.dit import AudioInput, ConditionInput, JointDiT, VideoInput, _attend, _project
from streamchar.model.orchestrator import Orchestrator, ProgressPointer, pointer_loss
from streamchar.model.rope import ModalityRoPE
from streamchar.model.streamchar_model import build_model, parameter_counts
from streamchar.model.tokenizer import CharacterTokenizer, QwenTokenizer
from streamchar.model.weights import load_wan_into

SMALL = DiTConfig(num_layers=2, num_heads=2, head_dim=12, ffn_dim=32, patch_size=(1, 2, 2), text_dim=16,
                  audio_encoder_layers=1, audio_decoder_layers=1)  # fmt: skip


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    return JointDiT(SMALL, 8, 6).eval()


def _inputs(seed=1, frames=3):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(1, 8, frames, 4, 4, generator=g)
    audio = torch.randn(1, 6, 4 * frames, generator=g)
    cond = torch.randn(1, 4 * frames, 24, generator=g)
    return video, audio, cond


def _conditions(seed=2):
    g = torch.Generator().manual_seed(seed)
    return ConditionInput(torch.randn(1, 8, 1, 4, 4, generator=g), torch.randn(1, 8, 3, 4, 4, generator=g), torch.randn(1, 8, 3, 4, 4, generator=g))


def test_video_path_is_wan(tmp_path):
    torch.manual_seed(0)
    wan = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=8, out_channels=8,
                                text_dim=16, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, rope_max_seq_len=64).eval()  # fmt: skip
    wan.save_pretrained(tmp_path / "wan")
    model = JointDiT(SMALL, 8, 6).eval()
    report = load_wan_into(model, tmp_path / "wan")
    assert report["audio_experts_from_video_ffn"] == 4 * SMALL.num_layers
    x, t, text = torch.randn(2, 8, 3, 4, 6), torch.tensor([300.0, 800.0]), torch.randn(2, 5, 16)
    with torch.no_grad():
        ref = wan(x, t, text).sample
        out, audio = model(VideoInput(x), t, text)
    assert audio is None
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    for k, v in model.blocks[0].ffn.state_dict().items():
        torch.testing.assert_close(model.blocks[0].ffn_audio.state_dict()[k], v)


def test_wan_checkpoint_of_another_shape_is_refused(tmp_path):
    WanTransformer3DModel(num_attention_heads=2, attention_head_dim=12, in_channels=8, out_channels=8, text_dim=16, ffn_dim=48,
                          num_layers=2).save_pretrained(tmp_path / "wan")  # fmt: skip
    with pytest.raises(StreamcharError, match=r"ffn_dim 48 \(preset needs 32\)"):
        load_wan_into(JointDiT(SMALL, 8, 6), tmp_path / "wan")
    with pytest.raises(StreamcharError, match="no Wan transformer"):
        load_wan_into(JointDiT(SMALL, 8, 6), tmp_path / "nothing")


def _masked_reference(model, video, audio, cond_a, t, text, conditions):
    """The asymmetric mask written out: one sequence [conditions, video, audio], condition rows
    blocked from noisy columns, condition tokens modulated with t = 0."""
    parts = conditions.parts()
    toks, cos, sin = [], [], []
    for lat, times in parts:
        x, grid = model._patchify(lat)
        c, s = model.rope.video(times.double(), grid[1], grid[2])
        toks.append(x), cos.append(c), sin.append(s)
    nc = sum(x.shape[1] for x in toks)
    xv, grid = model._patchify(video)
    c, s = model.rope.video(torch.arange(grid[0], dtype=torch.float64), grid[1], grid[2])
    temb, mod = model.time_embedding(t, xv)
    _, mod0 = model.time_embedding(torch.zeros(1), xv)
    a = model.audio_encoder(model.audio_in(audio.transpose(1, 2)) + model.audio_condition_in(cond_a) + temb[:, None])
    ac, as_ = model.rope.audio(torch.arange(a.shape[1], dtype=torch.float64))
    x = torch.cat(toks + [xv, a], dim=1)
    rope = (torch.cat(cos + [c, ac], dim=1), torch.cat(sin + [s, as_], dim=1))
    n = x.shape[1]
    allowed = torch.ones(n, n, dtype=torch.bool)
    allowed[:nc, nc:] = False
    text_h = model.embed_text(text)
    nv = xv.shape[1]
    for blk in model.blocks:
        m = torch.cat([(blk.scale_shift_table + mod0)[:, None].expand(1, nc, 6, -1),
                       (blk.scale_shift_table + mod)[:, None].expand(1, n - nc, 6, -1)], 1)
        shift, scale, gate, c_shift, c_scale, c_gate = m.unbind(2)
        h = blk.norm1(x) * (1 + scale) + shift
        q, k, v = _project(blk.attn1, h, rope)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=allowed)
        x = x + blk.attn1.to_out[0](o.transpose(1, 2).flatten(2)) * gate
        h2 = blk.norm2(x)
        q2 = blk.attn2.norm_q(blk.attn2.to_q(h2)).unflatten(2, (2, -1))
        k2 = blk.attn2.norm_k(blk.attn2.to_k(text_h)).unflatten(2, (2, -1))
        x = x + _attend(blk.attn2, q2, k2, blk.attn2.to_v(text_h).unflatten(2, (2, -1)))
        h = blk.norm3(x) * (1 + c_scale) + c_shift
        ff = torch.cat([blk.ffn(h[:, : nc + nv]), blk.ffn_audio(h[:, nc + nv :])], 1)
        x = x + ff * c_gate
    return x[:, :nc], x[:, nc:]


def test_asymmetric_mask_and_condition_cache(dit):
    video, audio, cond_a = _inputs()
    text, t, conditions = torch.randn(1, 5, 16), torch.tensor([600.0]), _conditions()
    with torch.no_grad():
        cache = dit.condition_cache(conditions, text)
        cond_out_1, noisy_out = _masked_reference(dit, video, audio, cond_a, t, text, conditions)
        video2, audio2, _ = _inputs(seed=9)
        cond_out_2, _ = _masked_reference(dit, video2, audio2, cond_a, t, text, conditions)
        cache2 = dit.condition_cache(conditions, text)
        # the noisy tokens do not reach the condition tokens' outputs, nor the cache
        torch.testing.assert_close(cond_out_1, cond_out_2, atol=1e-6, rtol=0)
        for (k1, v1), (k2, v2) in zip(cache.kv, cache2.kv):
            assert torch.equal(k1, k2) and torch.equal(v1, v2)
        # the cached path is the masked full sequence for the noisy tokens
        v_out, a_out = dit(VideoInput(video), t, text, AudioInput(audio, cond_a), cache=cache)
        ref_v, ref_a = dit(VideoInput(video), t, text, AudioInput(audio, cond_a), conditions=conditions)
        torch.testing.assert_close(v_out, ref_v, atol=1e-6, rtol=0)
        nv = video.shape[2] * 4
        # and the conditions do reach the noisy tokens
        plain, _ = dit(VideoInput(video), t, text, AudioInput(audio, cond_a))
    assert (plain - v_out).abs().max() > 1e-3
    assert noisy_out.shape[1] == nv + audio.shape[2]


def _euler(velocity, v, a, steps):
    ts = sample_times(steps)
    for t0, t1 in zip(ts, ts[1:]):
        dv, da = velocity(v, a, t0)
        v, a = v + (t1 - t0) * dv, a + (t1 - t0) * da
    return v, a


def test_four_steps_with_cached_conditions_equal_recomputing(dit):
    video, audio, cond_a = _inputs()
    text, conditions = torch.randn(1, 5, 16), _conditions()
    with torch.no_grad():
        cache = dit.condition_cache(conditions, text)

        def cached(v, a, t):
            return dit(VideoInput(v), torch.tensor([t * TIMESTEP_SCALE]), text, AudioInput(a, cond_a), cache=cache)

        def recomputed(v, a, t):
            return dit(VideoInput(v), torch.tensor([t * TIMESTEP_SCALE]), text, AudioInput(a, cond_a), conditions=conditions)

        v1, a1 = _euler(cached, video, audio, steps=4)
        v2, a2 = _euler(recomputed, video, audio, steps=4)
    torch.testing.assert_close(v1, v2, atol=1e-6, rtol=0)
    torch.testing.assert_close(a1, a2, atol=1e-6, rtol=0)


def test_rope_shares_phase_across_modalities_and_places_motion_before_the_chunk():
    rope = ModalityRoPE(head_dim=24)
    vc, vs = rope.video(torch.arange(4, dtype=torch.float64), 2, 2)
    ac, as_ = rope.audio(torch.arange(16, dtype=torch.float64))
    for j in range(4):
        token = j * 4  # video latent j, grid cell (0, 0)
        torch.testing.assert_close(vc[0, token], ac[0, 4 * j])
        torch.testing.assert_close(vs[0, token], as_[0, 4 * j])
    assert not torch.allclose(vc[0, 4], ac[0, 1])  # audio latent 1 is a quarter of a video latent later
    # at integer positions from 0 the video rope is Wan's
    wan = WanRotaryPosEmbed(24, (1, 2, 2), 64)
    wc, ws = wan(torch.zeros(1, 8, 4, 4, 4))
    torch.testing.assert_close(vc, wc)
    torch.testing.assert_close(vs, ws)
    # motion latents end at -1: one latent frame before the chunk
    times = dict(zip(["reference", "sink", "motion"], [t for _, t in _conditions().parts()]))
    assert times["motion"].tolist()[-1] == -1.0 and times["sink"].max() < times["motion"].min() and times["reference"].item() < times["sink"].min()
    mc, ms = rope.video(torch.tensor([-1.0, 0.0], dtype=torch.float64), 1, 1)
    freq = 1.0 / 10000 ** (torch.arange(0, rope.t_dim, 2, dtype=torch.float64) / rope.t_dim)
    angle_0 = torch.atan2(ms[0, 1, 0, 0 : rope.t_dim : 2], mc[0, 1, 0, 0 : rope.t_dim : 2]).double()
    angle_m1 = torch.atan2(ms[0, 0, 0, 0 : rope.t_dim : 2], mc[0, 0, 0, 0 : rope.t_dim : 2]).double()
    torch.testing.assert_close(torch.remainder(angle_0 - angle_m1 - freq + torch.pi, 2 * torch.pi) - torch.pi,
                               torch.zeros_like(freq), atol=1e-5, rtol=0)  # fmt: skip


def test_pointer_is_clamped_and_trained_with_smooth_l1():
    torch.manual_seed(0)
    p = ProgressPointer(hidden=8, cond_dim=6, dim=4)
    cond, text = torch.randn(2, 5, 6), torch.randn(2, 7, 8)
    words = torch.arange(7, dtype=torch.float32).expand(2, 7) / 2
    mask, counts = torch.ones(2, 7), torch.tensor([3.0, 3.0])
    with torch.no_grad():
        p.offset.bias.fill_(100.0)
        assert torch.equal(p(cond, text, words, mask, counts), counts)
        p.offset.bias.fill_(-100.0)
        assert torch.equal(p(cond, text, words, mask, counts), torch.zeros(2))
        p.offset.bias.zero_()
        s = p(cond, text, words, mask, counts)
    assert ((s >= 0) & (s <= 3)).all()
    # smooth L1 with beta 1, by hand: |0 - 0.5| = 0.5 gives 0.5 * 0.5^2; |3 - 1| = 2 gives 2 - 0.5
    assert pointer_loss(torch.tensor([0.0, 3.0]), torch.tensor([0.5, 1.0])).item() == pytest.approx((0.125 + 1.5) / 2)
    assert pointer_loss(s, s.detach()).item() == 0


def test_orchestrator_loads_a_qwen2_checkpoint(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = load_config("tiny")
    o = cfg.orchestrator
    torch.manual_seed(0)
    lm = Qwen2ForCausalLM(Qwen2Config(vocab_size=o.vocab_size, hidden_size=o.hidden_size, intermediate_size=o.ffn_dim,
                                      num_hidden_layers=o.num_layers, num_attention_heads=o.num_heads,
                                      num_key_value_heads=o.num_kv_heads, tie_word_embeddings=True))  # fmt: skip
    lm.save_pretrained(tmp_path / "qwen")
    orch = Orchestrator(o, cfg.audio.latent_channels, cfg.dit.hidden_dim)
    orch.load_backbone(tmp_path / "qwen")
    ids = torch.randint(3, o.vocab_size, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(orch.backbone(input_ids=ids).last_hidden_state, lm.model(input_ids=ids).last_hidden_state)
    bad = json.loads((tmp_path / "qwen" / "config.json").read_text())
    bad["num_hidden_layers"] = 3
    bad.pop("layer_types", None)
    (tmp_path / "qwen" / "config.json").write_text(json.dumps(bad))
    with pytest.raises(StreamcharError, match=r"num_hidden_layers 3 \(preset needs 4\)"):
        orch.load_backbone(tmp_path / "qwen")


def test_tokenizers_number_words(tmp_path):
    tok = CharacterTokenizer(96)
    t = tok.encode("The birch-canoe  slid.")
    assert t.words == 4 and t.word_numbers[0] == 0 and t.word_numbers[-1] == 4
    assert t.word_numbers[1:4] == [1, 1, 1] and t.word_numbers[5] == 2  # "the", then "birch"
    with pytest.raises(StreamcharError, match="cannot encode"):
        tok.encode("naïve")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(["the birch canoe slid on the smooth planks"] * 20, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"]))
    PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>").save_pretrained(tmp_path / "tok")
    q = QwenTokenizer(tmp_path / "tok").encode("the birch canoe slid")
    assert q.words == 4 and q.word_numbers[-1] == 4 and q.word_numbers == sorted(q.word_numbers)


def test_bad_shapes_and_window_are_named():
    cfg = load_config("tiny", {"orchestrator": {"context_window": 64}})
    model = build_model(cfg).eval()
    with pytest.raises(StreamcharError, match="do not fit the DiT"):
        model.dit(VideoInput(torch.randn(1, 7, 9, 8, 8)), torch.tensor([1.0]), torch.randn(1, 3, cfg.dit.text_dim))
    from streamchar.model.orchestrator import OrchestratorInput

    x = OrchestratorInput(torch.randn(1, 64, 10), torch.ones(1, 40, dtype=torch.long), torch.ones(1, 40), torch.ones(1, 40),
                          torch.tensor([5.0]), torch.randn(1, 64, 0), torch.randn(1, 64, 33), torch.tensor([500.0]))  # fmt: skip
    with pytest.raises(StreamcharError, match="window is 64"):
        model.velocity(VideoInput(torch.randn(1, 48, 9, 8, 8)), x, torch.randn(1, 3, cfg.dit.text_dim))


def test_paper_parameter_counts_on_meta():
    counts = parameter_counts(build_model(load_config("paper"), "meta"))
    assert 4.9e9 < counts["dit: Wan2.2 part"] < 5.1e9
    assert 3.0e9 < counts["orchestrator: Qwen2 backbone"] < 3.2e9
