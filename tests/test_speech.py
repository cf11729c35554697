import numpy as np
import pytest

from streamchar.data.speech import Voice, check_text, synthesize, transcript_words
from streamchar.errors import StreamcharError

VOICE = Voice("en-us+f5", pitch=50, rate=170)


def test_word_timings_cover_every_word_in_order():
    text = "A break in the dam almost caused a flood."
    s = synthesize(text, VOICE, 24000)
    assert [w.label for w in s.words] == [w for w, _, _ in transcript_words(text)]
    starts = [w.start for w in s.words]
    assert starts == sorted(starts) and len(set(starts)) == len(starts), "joined words ('in the') get their own start"
    assert all(w.end >= w.start for w in s.words)
    assert s.words[-1].end <= s.duration + 1e-6
    assert s.sample_rate == 24000 and s.audio.dtype == np.float32
    assert np.abs(s.audio).max() == pytest.approx(0.9, abs=1e-3)


def test_word_event_on_punctuation_goes_to_the_next_word():
    s = synthesize("Hello - there", VOICE, 24000)
    hello, there = s.words
    assert there.start >= hello.end - 1e-6 and there.start > 0.3
    assert [w.label for w in synthesize("- Hello there", VOICE, 24000).words] == ["Hello", "there"]


def test_phoneme_timings_tile_the_speech():
    s = synthesize("Glue the sheet to the dark blue background.", VOICE, 24000)
    for a, b in zip(s.phonemes, s.phonemes[1:]):
        assert a.end == pytest.approx(b.start)
    labels = [p.label for p in s.phonemes]
    assert "g" in labels and "b" in labels


def test_speech_is_loud_in_words_and_quiet_between_sentences():
    s = synthesize("The birch canoe slid on the smooth planks. Glue the sheet.", VOICE, 24000)
    sr = s.sample_rate
    planks, glue = s.words[7], s.words[8]
    assert (planks.label, glue.label) == ("planks", "Glue")
    inside = s.audio[int(s.words[1].start * sr) : int(planks.end * sr)]
    gap = s.audio[int((planks.end + 0.03) * sr) : int((glue.start - 0.03) * sr)]
    assert len(gap) > 0.1 * sr
    assert np.sqrt((inside**2).mean()) > 10 * np.sqrt((gap**2).mean() + 1e-12)


def test_same_input_same_audio():
    a = synthesize("Rice is often served in round bowls.", VOICE, 24000)
    b = synthesize("Rice is often served in round bowls.", VOICE, 24000)
    assert np.array_equal(a.audio, b.audio) and a.words == b.words


# a fork copies the locks other threads hold (torch's, FFmpeg's, a server's), and garbage that
# needs those threads (a PyAV reformatter joining its slice threads) can be freed in the child,
# which then waits for ever: speech must never fork the process that asks for it
FORKS = """
import os
from streamchar.data.speech import Voice, synthesize
forks = []
os.register_at_fork(before=lambda: forks.append(1))
for _ in range(2):
    synthesize("Rice is often served in round bowls.", Voice("en-us+f5"), 24000)
print(len(forks))
"""


def test_speech_never_forks_the_process_that_asks_for_it():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", FORKS], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "0"


def test_a_helper_that_died_is_started_again():
    from streamchar.data import speech

    a = synthesize("Rice is often served in round bowls.", VOICE, 24000)
    helper = speech._engine()._helper
    helper.kill()
    helper.wait()
    b = synthesize("Rice is often served in round bowls.", VOICE, 24000)
    assert speech._engine()._helper is not helper and np.array_equal(a.audio, b.audio)


def test_rate_changes_duration():
    slow = synthesize("These days a chicken leg is a rare dish.", Voice("en-us+f5", rate=130), 24000)
    fast = synthesize("These days a chicken leg is a rare dish.", Voice("en-us+f5", rate=220), 24000)
    assert slow.duration > 1.3 * fast.duration


@pytest.mark.parametrize(
    "text, message",
    [("", "empty"), ("   \n\t", "empty"), ("Caf\u00e9 au lait", "cannot speak"), ("We have 42 cats", "spell numbers out"), ("...", "no words")],
)
def test_bad_text_is_refused(text, message):
    with pytest.raises(StreamcharError, match=message):
        check_text(text)


def test_unknown_voice():
    with pytest.raises(StreamcharError, match="no voice 'en-us\\+nobody'"):
        synthesize("Hello there.", Voice("en-us+nobody"), 24000)


def test_missing_espeak_says_how_to_install(monkeypatch):
    from streamchar.data import speech

    def no_library(*args, **kwargs):
        raise OSError("libespeak-ng.so.1: cannot open shared object file")

    monkeypatch.setattr(speech, "_ENGINE", None)
    monkeypatch.setattr(speech.ctypes, "CDLL", no_library)
    with pytest.raises(StreamcharError, match="espeak-ng library not found; install it with: sudo apt-get install espeak-ng"):
        synthesize("Hello there.", VOICE, 24000)
