"""SynthTalk's open-English text: split by document, the open source held out, every sentence speakable."""

from __future__ import annotations

import pytest

from streamchar.data.corpus import _split_of, corpus, corpus_sentences, corpus_stats, speakable
from streamchar.data.everyday import everyday_sentences
from streamchar.data.harvard import split_sentences
from streamchar.utils.spoken import to_spoken
from streamchar.utils.text import normalize_words

SMALL = ("harvard", "chatterbot")


def test_harvard_keeps_its_lists_and_the_open_split_is_the_held_out_source() -> None:
    c = corpus(SMALL)
    assert {s.source for s in c["open"]} == {"chatterbot"}
    assert all(s.source == "harvard" for split in ("train", "val", "test") for s in c[split])
    assert corpus_sentences("test-unseen", SMALL)[:5] == split_sentences("test")[:5]
    train = {" ".join(normalize_words(s)) for s in corpus_sentences("train", SMALL)}
    assert not train & {" ".join(normalize_words(s)) for s in corpus_sentences("open", SMALL)}, "a sentence is in one split only"


def test_a_document_goes_to_one_split_whatever_else_is_read() -> None:
    assert {_split_of("fortunes", "wisdom-7") for _ in range(3)} == {_split_of("fortunes", "wisdom-7")}
    splits = [_split_of("wordnet", f"noun-{k}") for k in range(4000)]
    assert 0.05 < (splits.count("val") + splits.count("test")) / len(splits) < 0.11  # 8% held out
    assert _split_of("chatterbot", "greetings-0") == "open" and _split_of("harvard", "list-57") == "test"


def test_everyday_sentences_are_seeded_and_read_aloud() -> None:
    assert everyday_sentences(40, seed=3) == everyday_sentences(40, seed=3) != everyday_sentences(40, seed=4)
    said = [to_spoken(s).text for s in everyday_sentences(200, seed=0)]
    assert not any(ch.isdigit() or ch in "$£€%°&" for s in said for ch in s), "numbers and symbols are spoken as words"


def test_what_is_not_speech_stays_out() -> None:
    def ok(text: str) -> bool:
        return speakable(text, normalize_words(text))

    assert ok("Turn left after 3 blocks.")
    assert not ok("Visit https://example.com today.") and not ok("Use x = {a: 1} in code.")
    assert not ok("Yes.") and not ok(" ".join(["word"] * 40)), "too short or longer than a clip holds"
    assert not ok("What the fuck is this?")


@pytest.mark.slow
def test_the_whole_corpus_is_broad() -> None:
    stats = corpus_stats()
    assert stats["all"]["sentences"] >= 20000 and stats["all"]["distinct_words"] >= 20000
    for split in ("train", "val", "test", "open"):
        assert stats[split]["sentences"] > 500
    assert stats["open"]["distinct_words_not_in_train"] > 100, "the open split has words training never speaks"
    for needed in ("i", "me", "hello", "please", "thanks", "name", "today"):
        assert needed in {w for s in corpus_sentences("train") for w in normalize_words(s)}, needed


def test_a_clip_its_engine_cannot_speak_is_skipped_and_the_set_goes_on(tmp_path, monkeypatch) -> None:
    import json

    from streamchar.config import load_config
    from streamchar.data import synth
    from streamchar.errors import UnspeakableText

    real = synth.build_clip

    def build(plan, cfg):
        if plan.index == 1:
            raise UnspeakableText("festival's words do not match the transcript at 'But' (it said 'dot')")
        return real(plan, cfg)

    monkeypatch.setattr(synth, "build_clip", build)
    summary = synth.synthesize_set(tmp_path / "set", 3, 0, load_config("tiny"), workers=1, target_seconds=1.0)
    assert summary["clips"] == 2 and summary["skipped"] == 1
    assert "it said 'dot'" in json.loads((tmp_path / "set" / synth.SKIPPED).read_text())["clip-000001"]
    from streamchar.data.inspect import clip_engines

    voices = clip_engines(tmp_path / "set", voice=True)
    assert set(voices) == {"clip-000000", "clip-000002"} and all(v.startswith("espeak:en-us+") for v in voices.values())


def test_long_streams_speak_the_open_split_when_asked(tmp_path) -> None:
    import json

    from streamchar.config import load_config
    from streamchar.config.load import override_config
    from streamchar.data.long_streams import write_long_streams
    from streamchar.errors import StreamcharError

    harvard = load_config("tiny")
    with pytest.raises(StreamcharError, match="chatterbot"):
        write_long_streams(tmp_path / "no", 1, 3.0, 0, harvard, split="open")
    cfg = override_config(harvard, {"synthtalk": {"text": ["harvard", "chatterbot"]}})
    write_long_streams(tmp_path / "open", 1, 3.0, 0, cfg, split="open")
    meta = json.loads((tmp_path / "open" / "long-000.json").read_text())
    spoken = {" ".join(normalize_words(s)) for s in corpus_sentences("open", ("harvard", "chatterbot"))}
    assert meta["split"] == "open" and meta["seconds"] >= 3.0
    assert any(key in " ".join(normalize_words(meta["transcript"])) for key in spoken)


def test_a_held_out_voice_is_never_a_training_characters() -> None:
    from streamchar.config import load_config
    from streamchar.config.load import override_config
    from streamchar.data.character import make_character
    from streamchar.data.synth import character_seeds, voice_key
    from streamchar.errors import StreamcharError

    cfg = override_config(load_config("tiny"), {"synthtalk": {"engines": ["espeak", "flite"], "train_characters": 40}})
    held = override_config(cfg, {"synthtalk": {"held_out_voices": ["flite:awb"]}})
    (train, unseen), (train_held, unseen_held) = character_seeds(3, cfg), character_seeds(3, held)

    def voices(seeds: list[int]) -> list[str]:
        return [voice_key(make_character(s, ("espeak", "flite")).voice) for s in seeds]

    assert "flite:awb" in voices(train) and "flite:awb" not in voices(train_held)
    assert unseen_held == unseen and len(set(train_held)) == len(train_held) == 40
    assert [s for s in train_held if s in train] == [s for s, v in zip(train, voices(train)) if v != "flite:awb"]
    with pytest.raises(StreamcharError, match="festival:kal_diphone"):
        character_seeds(3, override_config(cfg, {"synthtalk": {"held_out_voices": ["festival:kal_diphone"]}}))


def test_a_set_may_speak_in_one_voice_no_other_set_uses() -> None:
    """`synthtalk.voice`: every clip in the one voice (a test set in a voice no model heard), the looks unchanged."""
    from pydantic import ValidationError

    from streamchar.config import load_config
    from streamchar.config.load import override_config
    from streamchar.data.clip import build_clip
    from streamchar.data.synth import plan_set
    from streamchar.errors import StreamcharError

    cfg = override_config(load_config("tiny"), {"synthtalk": {"engines": ["espeak", "flite"], "voice": "flite:kal", "max_sentences": 1}})
    plan = plan_set(4, 7, cfg)[0]
    clip = build_clip(plan, cfg)
    plain = build_clip(plan, override_config(cfg, {"synthtalk": {"voice": None}}))
    assert clip["record"]["voice"].startswith("flite kal pitch 0") and not plain["record"]["voice"].startswith("flite kal ")
    assert clip["record"]["character"] == plain["record"]["character"] | {"voice": clip["record"]["character"]["voice"]}
    assert clip["record"]["words"] and len(clip["audio"]) != len(plain["audio"])  # spoken again, by kal
    with pytest.raises((StreamcharError, ValidationError), match="voice"):
        override_config(cfg, {"synthtalk": {"voice": "kal"}})
