import numpy as np

from streamchar.data.speech import Timed
from streamchar.data.visemes import mouth_track, viseme_for


def test_table_reads_espeak_names():
    assert viseme_for("m").open == 0.0
    assert viseme_for("a").open > 0.7
    assert viseme_for("@2").open == viseme_for("@").open
    assert viseme_for("u:").round > 0.8 and viseme_for("i:").width > 0.8
    assert viseme_for("_:").open == 0.0
    assert viseme_for("3:") == viseme_for("3") and viseme_for("3:").round > 0  # "bird", not a bare mark
    assert viseme_for("0").open > 0.5  # "lot"
    assert viseme_for(";").open == 0.0 and viseme_for("l;") == viseme_for("l")


def test_bilabial_closes_between_open_vowels_and_motion_is_smooth():
    ph = [Timed("a", 0.0, 0.15), Timed("m", 0.15, 0.25), Timed("a", 0.25, 0.4)]
    t = np.arange(0, 0.4, 1 / 240)
    m = mouth_track(ph, t)
    opening = m[:, 0]
    at = lambda s: opening[int(s * 240)]  # noqa: E731
    assert at(0.2) < 0.15 and at(0.07) > 0.5 and at(0.33) > 0.5
    assert np.abs(np.diff(opening)).max() < 0.15, "co-articulation: no jumps between samples 4 ms apart"


def test_silence_is_closed():
    ph = [Timed("a", 1.0, 1.2)]
    m = mouth_track(ph, np.array([0.0, 1.1, 3.0]))
    assert m[0, 0] == 0.0 and m[2, 0] == 0.0 and m[1, 0] > 0.5
