"""Reading the transcript at tiny scale: frame-level phoneme targets in windows and batches and a
loss that reaches the orchestrator, transcript-aligned positions (word timings in training, the
plan in streams), the text bias, input scales, checkpoints from before the aids."""

import numpy as np
import pytest
import torch

from streamchar.config import load_config
from streamchar.data.latents import LatentCache
from streamchar.errors import StreamcharError
from streamchar.model.checkpoint import new_generator
from streamchar.model.tokenizer import CharacterTokenizer
from streamchar.training.batch import collate, pretraining_loss
from streamchar.training.phonemes import IGNORE, OTHER, PHONEME_CLASSES, SILENCE, frame_phonemes, phoneme_class
from streamchar.training.windows import WindowSource


def test_frame_labels_follow_the_phoneme_timings():
    timed = [{"phoneme": "k", "start": 0.10, "end": 0.20}, {"phoneme": "_:", "start": 0.20, "end": 0.30},
             {"phoneme": "E", "start": 0.30, "end": 0.55}, {"phoneme": "??", "start": 0.55, "end": 0.60}]  # fmt: skip
    labels = frame_phonemes(timed, start=0.0, frames=16, rate=20.0)  # latent centres at 0.025, 0.075, ...
    centres = (np.arange(16) + 0.5) / 20
    k, e = phoneme_class("k"), phoneme_class("E")
    assert k not in (SILENCE, OTHER) and e not in (SILENCE, OTHER, k)
    want = np.where((centres >= 0.1) & (centres < 0.2), k, SILENCE)
    want = np.where((centres >= 0.3) & (centres < 0.55), e, want)
    want = np.where((centres >= 0.55) & (centres < 0.6), OTHER, want)
    assert np.array_equal(labels, want)
    shifted = frame_phonemes(timed, start=0.3, frames=4, rate=20.0)  # a later window reads later phonemes
    assert np.array_equal(shifted, labels[6:10])


def test_preset_head_matches_the_inventory():
    assert load_config("tiny").orchestrator.phoneme_classes == PHONEME_CLASSES
    assert load_config("paper").orchestrator.phoneme_classes == 0


def test_windows_and_batches_carry_aligned_phonemes(cache):
    cfg = load_config("tiny")
    lc = LatentCache(cache)
    src = WindowSource(lc, cfg, CharacterTokenizer(96))
    later = next(k for k, (_, c) in enumerate(src.index) if c >= 1)
    first = next(k for k, (_, c) in enumerate(src.index) if c == 0)
    w, w0 = src.window(later), src.window(first)
    i, c = src.index[later]
    whole = frame_phonemes(lc.records[i]["phonemes"], 0.0, (c + 1) * 33, 24.0)
    assert torch.equal(w.phonemes, torch.from_numpy(whole))
    varied = WindowSource(lc, cfg, CharacterTokenizer(96), vary_history=True)
    cut = [(k, varied.window(k)) for k, (_, c) in enumerate(varied.index) if c >= 2]
    k, short = next((k, v) for k, v in cut if len(v.phonemes) < (varied.index[k][1] + 1) * 33)  # a history that starts mid-clip
    i, c = varied.index[k]
    from_start = torch.from_numpy(frame_phonemes(lc.records[i]["phonemes"], 0.0, (c + 1) * 33, 24.0))
    assert torch.equal(short.phonemes, from_start[-len(short.phonemes) :])  # its labels are the clip's at those frames
    assert (w.phonemes != SILENCE).any()
    later2 = [k for k, (_, c) in enumerate(src.index) if c >= 1]
    batch = collate([src.window(k) for k in later2[:2]])
    n_hist = batch.history.shape[2]
    assert batch.phonemes.shape == (2, n_hist + 33)
    assert ((batch.phonemes[:, :n_hist] == IGNORE) == (batch.history_mask == 0)).all()  # padding has no target
    assert w0.history.shape[1] == 0 and w0.phonemes.shape == (33,)


def test_phoneme_loss_trains_the_orchestrator(cache):
    cfg = load_config("tiny")
    model, prompt = new_generator(cfg, seed=0)
    src = WindowSource(LatentCache(cache), cfg, CharacterTokenizer(96))
    batch = collate([src.window(k) for k, (_, c) in enumerate(src.index) if c >= 1][:2])
    without = pretraining_loss(model, prompt, batch, torch.Generator().manual_seed(1), speech_only=True)
    out = pretraining_loss(model, prompt, batch, torch.Generator().manual_seed(1), speech_only=True, phoneme_weight=0.5)
    assert "phoneme" not in without and abs(float(out["phoneme"]) - np.log(PHONEME_CLASSES)) < 1.0  # untrained: near uniform
    out["phoneme"].backward()
    orch = model.orchestrator
    assert orch.phoneme_head.weight.grad.abs().sum() > 0
    assert orch.backbone.embed_tokens.weight.grad.abs().sum() > 0  # the transcript's embeddings are asked to align
    with torch.no_grad():
        orch.phoneme_head.weight.zero_()
        orch.phoneme_head.bias.zero_()
    uniform = pretraining_loss(model, prompt, batch, torch.Generator().manual_seed(1), speech_only=True, phoneme_weight=0.5)
    assert float(uniform["phoneme"]) == pytest.approx(np.log(PHONEME_CLASSES), rel=1e-5)  # cross-entropy of even odds


def _orchestrator(**over):
    from streamchar.model.orchestrator import Orchestrator

    cfg = load_config("tiny", {"orchestrator": over})
    torch.manual_seed(0)
    return Orchestrator(cfg.orchestrator, cfg.audio.latent_channels, cfg.dit.num_heads * cfg.dit.head_dim)


def test_audio_latents_sit_beside_the_text_spoken_then():
    orch = _orchestrator(plan={"text_rate": 0.5})
    mask = torch.tensor([[1] * 3 + [1, 1, 0] + [0, 1, 1] + [1, 1]])  # ref 3, text 3 (one pad), history 3 (left-padded), chunk 2
    pos = orch._positions(mask, 3, 3, torch.tensor([[0, 1, 1]]), 2)
    assert pos[0, :6].tolist() == [0, 1, 2, 3, 4, 5]
    assert pos[0, 7:].tolist() == [3.0, 3.5, 4.0, 4.5]  # real history latents 0, 1, then the chunk's 2, 3
    sequential = _orchestrator(reading="pointer", plan=None)._positions(mask, 3, 3, torch.tensor([[0, 1, 1]]), 2)
    assert sequential[0].tolist() == [0, 1, 2, 3, 4, 4, 4, 5, 6, 7, 8]  # padding repeats the position before it


def test_text_bias_points_audio_at_nearby_text_and_keeps_causality():
    orch = _orchestrator(plan={"text_rate": 1.0, "text_window": 2.0})
    mask = torch.ones(1, 3 + 6 + 0 + 4, dtype=torch.long)
    mask[0, 8] = 0  # a padded transcript token
    pos = orch._positions(mask, 3, 6, torch.zeros(1, 0, dtype=torch.long), 4)
    bias = orch._text_bias(mask, pos, 3, 6, torch.float32)[0, 0]
    low = torch.finfo(torch.float32).min
    future = torch.ones(13, 13, dtype=torch.bool).triu(1)
    assert bias.shape == (13, 13) and (bias[future] == low).all()  # nothing sees the future
    assert (bias[:, 8] == low).all()  # nor padding
    chunk_to_text = bias[9:, 3:8]  # chunk latent k sits at position 3 + k, text token i at 3 + i
    assert [int(r.argmax()) for r in chunk_to_text] == [0, 1, 2, 3]
    assert torch.equal(bias[9:, :3], torch.zeros(4, 3))  # the reference voice is not biased
    out = orch(_inputs(text=6, pad=1))
    assert out.condition.shape == (1, 4, orch.condition_out.out_features) and torch.isfinite(out.condition).all()


def test_new_inputs_start_at_the_token_embeddings_scale():
    orch = _orchestrator()
    tokens = orch.backbone.embed_tokens.weight.pow(2).mean().sqrt()
    audio = orch._audio(torch.randn(4, orch.audio_in.in_features, 50), "condition").pow(2).mean().sqrt()
    assert 0.5 < float(audio / tokens) < 2.0


def _inputs(text: int, pad: int):
    from streamchar.model.orchestrator import OrchestratorInput

    ids = torch.randint(3, 60, (1, text))
    mask = torch.ones(1, text, dtype=torch.long)
    mask[0, text - pad :] = 0
    return OrchestratorInput(torch.randn(1, 64, 72), ids, mask, torch.arange(text)[None].float(), torch.tensor([float(text - pad)]),
                             torch.zeros(1, 64, 0), torch.randn(1, 64, 4), torch.tensor([500.0]))  # fmt: skip


@pytest.mark.slow
def test_text_reading_benchmark_compares_true_and_rotated_transcripts(cache, tmp_path, monkeypatch):
    from streamchar.evaluation import bench_text
    from streamchar.model.checkpoint import save_generator

    model, prompt = new_generator(load_config("tiny"), seed=0)
    save_generator(tmp_path / "gen", model, prompt, {"stage": "joint", "step": 0})
    result = bench_text.bench_text_reading(tmp_path / "gen", cache, split="train", windows=4, batch=2)
    assert [r["t"] for r in result["by_t"]] == list(bench_text.TIMES) and result["windows"] == 4
    assert all(r["audio_gap"] != 0 for r in result["by_t"]) and "phoneme_true" in result["by_t"][0]  # the text is seen
    monkeypatch.setattr(bench_text, "_rotated", lambda windows: windows)  # rotated = true: no gap at all
    same = bench_text.bench_text_reading(tmp_path / "gen", cache, split="train", windows=4, batch=2)
    assert all(r["audio_gap"] == 0 and r["phoneme_true"] == r["phoneme_rotated"] for r in same["by_t"])


def test_a_checkpoint_from_before_the_aids_loads_as_it_was_trained(tmp_path):
    import json

    import pytest

    from streamchar.errors import StreamcharError
    from streamchar.model.checkpoint import load_generator, save_generator

    old = load_config("tiny", {"orchestrator": {"phoneme_classes": 0, "reading": "pointer", "plan": None}})
    model, prompt = new_generator(old, seed=0)
    save_generator(tmp_path / "old", model, prompt, {"stage": "joint"})
    meta = json.loads((tmp_path / "old" / "config.json").read_text())
    for field in ("phoneme_classes", "reading", "plan"):
        del meta["config"]["orchestrator"][field]  # written before the fields existed
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    loaded, _, _ = load_generator(tmp_path / "old")
    assert loaded.orchestrator.phoneme_head is None and loaded.cfg.orchestrator.reading == "pointer"  # not today's tiny preset
    meta["config"]["orchestrator"]["text_rate"] = -1  # the layout before reading: a rate switched the plan on
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(StreamcharError, match="text_rate"):
        load_generator(tmp_path / "old")
    meta["config"]["orchestrator"]["text_rate"] = 0.0
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    reread = load_config("tiny", {"orchestrator": {"phoneme_classes": 0, "plan": {"text_rate": 0.5, "text_window": 3.0}}})
    again, _, _ = load_generator(tmp_path / "old", config=reread)  # a run may change how the text is read
    assert again.cfg.orchestrator.plan.text_window == 3.0 and again.orchestrator.cfg.plan.text_rate == 0.5
    with pytest.raises(StreamcharError, match="orchestrator.num_layers"):
        load_generator(tmp_path / "old", config=load_config("tiny", {"orchestrator": {"phoneme_classes": 0, "num_layers": 2}}))


def test_spoken_positions_follow_the_word_timings():
    from streamchar.model.alignment import planned_positions, spoken_positions, window_positions, words_done

    tokens = CharacterTokenizer(96).encode("The cat sat.")  # ^ t h e _ c a t _ s a t . $ : indices 0..13
    times = [(0.2, 0.5), (0.5, 0.9), (1.2, 1.5)]
    at = np.array([0.0, 0.2, 0.35, 0.5, 1.0, 1.5, 2.0])
    pos = spoken_positions(tokens, times, at)
    assert pos[0] == 0 and pos[1] == 1 and abs(pos[2] - 2.5) < 1e-6  # silence at the start token, then through "the"
    assert abs(pos[3] - 4) < 0.01 and abs(pos[4] - (8 + 1 / 3)) < 1e-6  # "the" ends on its space; the pause walks to "sat"
    assert pos[5] == pos[6] == 13  # after the last word: the end token
    assert [words_done(tokens, p) for p in (3.9, 4, 8.4, 12.9, 13)] == [0, 1, 2, 2, 3]
    keep = tokens.kept(1, 1)  # "the" cut, "cat" read: the start token and "cat "
    assert keep == [0, 5, 6, 7, 8] and tokens.window(1, 1)[0] == [tokens.ids[j] for j in keep]
    mapped = window_positions(tokens, 1, 1, np.array([0.0, 2.5, 5, 6.5, 8, 9, 13]))
    assert np.allclose(mapped, [0, 0.5, 1, 2.5, 4, 4, 4])
    assert planned_positions(66, 3, 0.5).tolist() == [33.0, 33.5, 34.0]


def test_windows_place_latents_in_the_words_spoken_then(cache):
    from streamchar.training.windows import word_times

    lc = LatentCache(cache)
    src = WindowSource(lc, load_config("tiny"), CharacterTokenizer(96))
    k = next(k for k, (_, c) in enumerate(src.index) if c >= 1)
    w, (i, _) = src.window(k), src.index[k]
    assert w.text_positions.shape == (w.history.shape[1] + 33,)
    centres = (np.arange(len(w.text_positions)) + 0.5) / 24.0  # history starts at the clip's start here (c < 10)
    inside = 0
    for n, (start, end) in enumerate(word_times(lc.records[i]), start=1):
        for j in np.flatnonzero((centres > start + 0.01) & (centres < end - 0.01)):
            assert w.word_numbers[int(w.text_positions[j])] == n, (n, j)  # the token pointed at is the word's own
            inside += 1
    assert inside > 20 and (np.diff(w.text_positions.numpy()) >= 0).all()
    batch = collate([src.window(j) for j, (_, c) in enumerate(src.index) if c >= 1][:2])
    n_hist = batch.history.shape[2]
    assert batch.text_positions.shape == (2, n_hist + 33) and torch.equal(batch.text_positions[0, -33:], src.window(k).text_positions[-33:])
    paper_like = WindowSource(lc, load_config("tiny", {"orchestrator": {"reading": "pointer", "plan": None}}), CharacterTokenizer(96))
    assert paper_like.window(k).text_positions is None and collate([paper_like.window(k)]).text_positions is None


# the rule-based plans, each reading by the plan alone (the tiny preset's own is learned and follows the pointer)
PLANS = {"even": {"reading": "plan", "plan": {"word_pace": None}}, "letters": {"reading": "plan", "plan": {"word_pace": {"durations": "letters"}}},
         "espeak": {"reading": "plan", "plan": {"word_pace": {"durations": "espeak"}}}}


@pytest.mark.parametrize("plan_kind", list(PLANS))
def test_streams_read_the_transcript_by_the_plan(plan_kind, plan_session):
    from streamchar.model.alignment import paced_word_times, planned_positions, spoken_positions, window_positions, words_done

    cfg = load_config("tiny", {"orchestrator": PLANS[plan_kind]})
    rate, pace = cfg.orchestrator.plan.text_rate, cfg.orchestrator.plan.word_pace
    paced = pace is not None
    assert plan_kind == (pace.durations if paced else "even")

    session = plan_session(cfg)
    text = " ".join(["one two three four, five six seven eight nine ten."] * 6)  # 60 words, 365 tokens
    s = session(text, max_chunks=16)
    toks = s.reader.tokens
    times = paced_word_times(text, pace) if paced else None

    def plan(first, count):  # the plan, computed here from its definition
        if not paced:
            return planned_positions(first, count, rate)
        return spoken_positions(toks, times, (first + np.arange(count) + 0.5) / 24.0)

    seen = []
    original = s.model.orchestrator.forward
    s.model.orchestrator.forward = lambda x, prefix=None: seen.append(x) or original(x, prefix=prefix)
    for k in range(13):
        s.next_chunk(k)
    for k, x in enumerate(seen):
        first = max(0, k - s.cfg.stream.history_chunks) * 33
        cut = words_done(toks, plan(first, 1)[0])
        assert x.word_counts.item() == min(60, cut + cfg.orchestrator.lookahead_words) - cut  # the history's finished words, by the plan
        want = window_positions(toks, cut, cfg.orchestrator.lookahead_words, plan(first, (k + 1) * 33 - first))
        assert torch.allclose(x.text_positions[0], torch.from_numpy(want).float())
        assert s.progress[k] == words_done(toks, plan((k + 1) * 33, 1)[0])
    assert cut > 0 and seen[-1].history_audio.shape[2] == s.cfg.stream.history_chunks * 33
    short = list(session("one two three four").chunks())  # read within the first chunk (1.375 s)
    assert [c.closing for c in short] == [False, True] and short[0].words_spoken == 4


def test_word_pace_times_words_by_letters_and_punctuation():
    from streamchar.config.schema import WordPaceConfig
    from streamchar.model.alignment import paced_word_times, word_pace_features

    text = "Quench your thirst, then eat. It\u2019s well-known -- ok"
    assert word_pace_features(text).tolist() == [[6, 0, 0], [4, 0, 0], [6, 1, 0], [4, 0, 0], [3, 0, 1], [3, 0, 0], [4, 0, 0], [5, 1, 0], [2, 0, 0]]
    pace = WordPaceConfig(lead_seconds=0.2, word_seconds=0.01, letter_seconds=0.05, clause_pause_seconds=0.3, sentence_pause_seconds=0.5)
    times = paced_word_times(text, pace, start=1.0)
    assert len(times) == CharacterTokenizer(96).encode(text).words == 9
    assert times[0] == pytest.approx((1.2, 1.2 + 0.01 + 0.3))  # the lead, then 6 letters
    assert times[1][0] == pytest.approx(times[0][1])  # no pause inside a clause
    assert times[3][0] - times[2][1] == pytest.approx(0.3) and times[5][0] - times[4][1] == pytest.approx(0.5)
    assert times[6][0] == pytest.approx(times[5][1])  # a hyphen inside a word is no pause


def test_espeak_pace_times_the_tokenizers_words_as_espeak_speaks_them():
    from streamchar.config.schema import WordPaceConfig
    from streamchar.data.speech import Voice, spoken_word_times
    from streamchar.model.alignment import espeak_word_times, paced_word_times

    plain = "Glue the sheet to the dark blue background, then stop."
    spoken = spoken_word_times(plain, Voice(name="en-us", rate=168))
    assert espeak_word_times(plain, "en-us", 168) == [(w.start, w.end) for w in spoken]
    assert spoken_word_times(plain, Voice(name="en-us", rate=300))[-1].end < 0.75 * spoken[-1].end  # faster speech, shorter times
    text = "A well-known cafe & 3 cats/dogs. Don\u2019t go!"  # characters espeak would not speak as written become spaces
    times = espeak_word_times(text, "en-us", 168)
    assert len(times) == CharacterTokenizer(96).encode(text).words == 8  # a well known cafe cats dogs don't go
    assert all(b >= a for a, b in times) and all(c >= b for (_, b), (c, _) in zip(times, times[1:]))
    assert times[1][1] <= times[2][0] and times[2][0] - times[1][0] < 0.5  # "well" and "known" share espeak's one word
    assert times[6][0] - times[5][1] > 0.1  # a full stop pauses
    pace = WordPaceConfig(durations="espeak", lead_seconds=0.3, word_seconds=0.0, letter_seconds=0.05, clause_pause_seconds=0.0,
                          sentence_pause_seconds=0.0, espeak_scale=1.5)
    planned = paced_word_times(text, pace, start=2.0)
    assert planned[0][0] == pytest.approx(2.3)  # the lead from the stream's start, whatever espeak's own silence
    assert planned[-1][1] - planned[0][0] == pytest.approx(1.5 * (times[-1][1] - times[0][0]))
    assert paced_word_times("3 -- 4", pace) == []
    assert len(paced_word_times("o\u212aay then", pace)) == CharacterTokenizer(96).encode("o\u212aay then").words == 2  # Kelvin sign: k to both


def _records_timed_by(pace, n=40):
    from streamchar.model.alignment import paced_word_times

    rng = np.random.default_rng(0)
    words = ["the", "birch", "canoe", "slid", "on", "smooth", "planks", "glue", "sheet", "to", "dark", "blue", "background"]
    records = []
    for _ in range(n):
        picked = rng.choice(words, size=int(rng.integers(4, 12)))
        marks = rng.choice(["", "", "", ",", "."], size=len(picked))
        text = " ".join(w + m for w, m in zip(picked, marks)).rstrip(",.") + "."
        times = paced_word_times(text, pace)
        records.append({"transcript": text, "split": "train",
                        "words": [{"word": w, "start": a, "end": b} for w, (a, b) in zip(picked, times)]})
    return records


@pytest.mark.slow
def test_word_pace_fits_the_timings_it_was_made_from():
    from streamchar.config.schema import WordPaceConfig
    from streamchar.evaluation.bench_pace import fit_word_pace, plan_start_errors

    true = WordPaceConfig(lead_seconds=0.25, word_seconds=0.02, letter_seconds=0.07, clause_pause_seconds=0.2, sentence_pause_seconds=0.4)
    records = _records_timed_by(true)
    fitted = fit_word_pace(records, "letters")
    for field, value in true.model_dump().items():
        assert getattr(fitted, field) == pytest.approx(value, abs=1e-6), field
    cfg = load_config("tiny")
    assert plan_start_errors(records, cfg, fitted).max() < 1e-6 < plan_start_errors(records, cfg, None).mean()
    with pytest.raises(StreamcharError, match="no clip with word timings"):
        fit_word_pace([{"transcript": "one two", "words": [], "split": "train"}])

    spoken = true.model_copy(update={"durations": "espeak", "espeak_scale": 1.2})
    records = _records_timed_by(spoken, n=12)
    fitted = fit_word_pace(records, "espeak")
    assert fitted.durations == "espeak" and fitted.espeak_scale == pytest.approx(1.2, abs=1e-6)
    assert fitted.lead_seconds == pytest.approx(0.25)
    assert plan_start_errors(records, cfg, fitted).max() < 1e-6
    # the letters plan cannot follow espeak's rhythm, even at each clip's own rate
    letters = fitted.model_copy(update={"durations": "letters"})
    assert plan_start_errors(records, cfg, letters, stretch=True).mean() > 0.01


def test_pace_benchmark_reports_both_plans(cache):
    from streamchar.evaluation.bench_pace import bench_pace

    result = bench_pace(cache, load_config("tiny"), split="train")  # the test cache holds training clips only
    assert result["clips"] == result["train_clips"] > 0
    errors, rhythm = result["word_start_error_s"], result["word_start_error_at_each_clips_rate_s"]
    assert 0 <= errors["word_pace_letters"] < errors["even_text_rate"]  # fitted on these clips' own timings
    assert 0 <= rhythm["word_pace_espeak"] < 0.5 * rhythm["word_pace_letters"] < rhythm["even_text_rate"]  # espeak spoke them
    assert result["fitted_word_pace"]["durations"] == "espeak"
    with pytest.raises(StreamcharError, match="test-unseen"):
        bench_pace(cache, load_config("tiny"))
    with pytest.raises(StreamcharError, match="reading is pointer"):
        bench_pace(cache, load_config("tiny", {"orchestrator": {"reading": "pointer", "plan": None}}))


@pytest.mark.parametrize("plan_kind", ["letters", "espeak"])
def test_words_appended_after_the_plan_ran_out_start_with_the_next_chunk(plan_kind, monkeypatch, plan_session):
    from streamchar.model.alignment import paced_word_times

    cfg = load_config("tiny", {"orchestrator": PLANS[plan_kind]})
    session = plan_session(cfg)
    s = session("one two", max_chunks=8)
    first = list(s.word_times())
    for k in range(3):
        s.next_chunk(k)
    s.append_text("three four")
    assert s.word_times()[:2] == first and s.word_times()[2][0] == pytest.approx(3 * 1.375)
    s.append_text("five")  # still ahead of the stream: follows the words before it, timed after them
    part = paced_word_times("one two three four five", cfg.orchestrator.plan.word_pace)
    assert s.word_times()[4][0] - s.word_times()[3][1] == pytest.approx(part[4][0] - part[3][1])
    assert s.word_times()[4][1] - s.word_times()[4][0] == pytest.approx(part[4][1] - part[4][0])
    def failing(*args, **kwargs):
        raise StreamcharError("espeak-ng failed")

    kept = (s.transcript, s.words_total, list(s.word_times()))
    with monkeypatch.context() as m:
        m.setattr("streamchar.streaming.reading.paced_word_times", failing)
        with pytest.raises(StreamcharError, match="espeak-ng failed"):
            s.append_text("six seven")
    assert (s.transcript, s.words_total, s.word_times()) == kept  # a plan that failed did not take the text
    whole = session("one, two three.")
    whole.append_text("Four five")  # appended before any chunk: planned as if it had been there from the start
    if plan_kind == "letters":
        np.testing.assert_allclose(whole.word_times(), paced_word_times("one, two three. Four five", cfg.orchestrator.plan.word_pace), rtol=1e-6)


@pytest.mark.parametrize("over", [{}, {"plan": {"text_window": 0}}], ids=["text-bias", "plain-mask"])
def test_cached_prefix_gives_the_full_pass_at_every_step(over):
    from dataclasses import replace

    orch = _orchestrator(**over).eval()
    g = torch.Generator().manual_seed(1)
    x = replace(_inputs(text=6, pad=1), history_audio=torch.randn(1, 64, 5, generator=g), history_mask=torch.tensor([[0, 1, 1, 1, 1]]))
    with torch.no_grad():
        prefix = orch.encode_prefix(x)
        for t in (900.0, 600.0, 300.0):  # the sampler's steps: new noisy audio and timestep, the same prefix
            step = replace(x, noisy_audio=torch.randn(1, 64, 4, generator=g), timestep=torch.tensor([t]))
            full, cached = orch(step), orch(step, prefix=prefix)
            assert torch.allclose(cached.condition, full.condition, atol=1e-5)
            assert torch.allclose(cached.progress_raw, full.progress_raw, atol=1e-5)
            assert torch.allclose(cached.phoneme_logits, full.phoneme_logits, atol=1e-5)
        assert prefix.cache.get_seq_length() == prefix.hidden.shape[1]  # each step leaves the cache as the prefix left it
        with pytest.raises(StreamcharError, match="laid out for 4 chunk latents, got 3"):
            orch(replace(x, noisy_audio=torch.randn(1, 64, 3)), prefix=prefix)


def test_a_paced_stream_ends_its_tail_after_the_last_word(tmp_path, plan_session):
    import json

    from streamchar.data.mp4 import read_mp4
    from streamchar.streaming.runner import run_stream
    from streamchar.streaming.writers import CallbackWriter, FragmentedMp4Writer

    cfg = load_config("tiny", {"orchestrator": PLANS["espeak"]})
    pace = cfg.orchestrator.plan.word_pace
    session = plan_session(cfg)
    s = session("glue the sheet to the dark blue background, then stop.")
    end = s.reader.end_seconds()
    from streamchar.model.alignment import paced_word_times

    assert end == pytest.approx(paced_word_times("glue the sheet to the dark blue background, then stop.", pace)[-1][1] + pace.tail_seconds)
    got = []
    out = tmp_path / "paced.mp4"
    report = run_stream(s, [CallbackWriter(lambda f, a: got.append((len(f), len(a)))),
                            FragmentedMp4Writer(out, 24, cfg.audio.sample_rate, cfg.video.width, cfg.video.height)])
    chunks = report.chunks
    assert len(chunks) == int(np.ceil(end / 1.375)) and [c.closing for c in chunks] == [False] * (len(chunks) - 1) + [True]
    last_frames = round((end - (len(chunks) - 1) * 1.375) * 24)
    assert [f for f, _ in got] == [33] * (len(chunks) - 1) + [last_frames]  # the last chunk cut at the plan's end
    assert all(a == f * cfg.audio.sample_rate // 24 for f, a in got)  # audio cut with its frames
    assert report.summary()["seconds"] == pytest.approx(((len(chunks) - 1) * 33 + last_frames) / 24)
    assert len(read_mp4(out).frames) == (len(chunks) - 1) * 33 + last_frames
    assert chunks[-1].words_spoken == s.words_total
    json.loads(json.dumps(report.to_json()))  # the report `--report` writes
    even = plan_session(load_config("tiny", {"orchestrator": PLANS["even"]}))
    assert even("one two").reader.end_seconds() is None  # the even pace keeps its closing chunk


@pytest.mark.parametrize("plan_kind", ["letters", "espeak"])
def test_a_long_script_is_planned_a_piece_at_a_time(plan_kind, plan_session):
    import math

    from streamchar.model.alignment import paced_word_times
    from streamchar.streaming.reading import PLAN_AHEAD_SECONDS

    cfg = load_config("tiny", {"orchestrator": PLANS[plan_kind]})
    text = " ".join(["One two three four, five six seven eight nine ten."] * 30)  # 300 words: far more than the plan times ahead
    s = plan_session(cfg)(text)
    assert 0 < len(s.word_times()) < 300 and s.word_times()[-1][1] >= 1.375 + PLAN_AHEAD_SECONDS  # enough for the first chunk
    assert s.reader.end_seconds() == math.inf  # not the end while words are still to be timed
    while len(s.word_times()) < 300:
        s.progress.append(0.0)  # a chunk made: the plan reaches further
        s.reader.prepare()
        assert s.word_times()[-1][1] >= (len(s.progress) + 1) * 1.375 + PLAN_AHEAD_SECONDS or len(s.word_times()) == 300
    whole = paced_word_times(text, cfg.orchestrator.plan.word_pace)  # the pieces join as the whole script's plan
    assert np.abs(np.array(s.word_times()) - np.array(whole)).max() < (1e-9 if plan_kind == "letters" else 0.05)
    assert s.reader.end_seconds() == pytest.approx(whole[-1][1] + cfg.orchestrator.plan.word_pace.tail_seconds, abs=0.05)
