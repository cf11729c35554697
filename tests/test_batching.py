"""Sessions batched through one model: each gets the chunk it would get alone."""

import pytest
import torch

from streamchar.streaming.batching import collate_contexts, next_chunks
from streamchar.streaming.engine import SessionSettings
from streamchar.streaming.inputs import character_request

SCRIPTS = [("unseen-0", "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background.", 3),
           ("unseen-3", "It is easy to tell the depth of a well.", 1),
           ("train-5", "These days a chicken leg is a rare dish. Rice is often served in round bowls. The juice of lemons makes fine punch.", 2),
           ("unseen-5", "The box was thrown beside the parked truck.", 0)]  # a first chunk: no sink or motion yet


def _sessions(pipe):
    out = []
    for k, (character, text, made) in enumerate(SCRIPTS):
        s = pipe.session(character_request(character, text, pipe.cfg), SessionSettings(steps=pipe.steps, seed=10 + k))
        for i in range(made):  # streams at different points: histories of different lengths
            s.next_chunk(i)
        out.append(s)
    return out


@pytest.mark.slow  # streams four sessions twice over
def test_batched_sessions_get_the_chunks_they_would_get_alone(shipped_pipeline):
    torch.manual_seed(0)
    alone, batched = _sessions(shipped_pipeline), _sessions(shipped_pipeline)
    for step in range(2):
        indices = [made + step for _, _, made in SCRIPTS]
        want = [s.next_chunk(i) for s, i in zip(alone, indices)]
        got = next_chunks(batched, indices)
        for w, g in zip(want, got):
            # the pointer's reading counts the words: a float the batch moves by a rounding error
            assert g.index == w.index and abs(g.words_spoken - w.words_spoken) < 1e-4 and g.words_total == w.words_total
            torch.testing.assert_close(g.video, w.video, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(g.audio, w.audio, rtol=1e-4, atol=1e-4)
        assert [c.timings["batch"] for c in got] == ([3, 3, 3, 1] if step == 0 else [4] * 4)  # a first chunk runs apart, then joins
    assert len({s.last_context.history.shape[2] for s in batched}) > 1  # their histories differed


def test_collated_contexts_pad_text_right_and_history_left(shipped_pipeline):
    sessions = _sessions(shipped_pipeline)[:3]
    for s in sessions:
        s.begin_chunk()
    contexts = [s.last_context for s in sessions]
    batch = collate_contexts(contexts)
    longest_text = max(c.text_ids.shape[1] for c in contexts)
    longest_history = max(c.history.shape[2] for c in contexts)
    assert batch.text_ids.shape == (3, longest_text) and batch.history.shape[2] == longest_history
    for k, c in enumerate(contexts):
        n, h = c.text_ids.shape[1], c.history.shape[2]
        assert batch.text_mask[k].tolist() == [1] * n + [0] * (longest_text - n)
        assert batch.history_mask[k].tolist() == [0] * (longest_history - h) + [1] * h
        assert torch.equal(batch.history[k, :, longest_history - h :], c.history[0])
        assert torch.equal(batch.text_positions[k, longest_history - h :], c.text_positions[0])


def test_streams_decoded_together_get_the_frames_they_would_get_alone(shipped_pipeline):
    """Three streams' chunks through one decoder batch (one at its start, two past it, with
    their own reference images), chunk after chunk: each stream's frames as decoded alone."""
    from streamchar.codecs.base import decode_streams

    codec = shipped_pipeline.video_codec
    g = torch.Generator().manual_seed(3)
    z, h, w = codec.latent_channels, codec.height // 16, codec.width // 16
    refs = [codec.prepare_reference(torch.rand(1, 3, codec.height, codec.width, generator=g) * 2 - 1) for _ in range(3)]
    chunks = [[torch.randn(1, z, 9, h, w, generator=g) for _ in range(3)] for _ in range(3)]
    alone, together = [codec.stream_decoder(r) for r in refs], [codec.stream_decoder(r) for r in refs]
    for d, c in zip(alone + together, chunks + chunks):  # the first stream starts later: at the second round
        if c is not chunks[0]:
            d.decode(c[0])
    for k in (1, 2):
        want = [d.decode(c[k]) for d, c in zip(alone, chunks)]
        got = decode_streams(together, [c[k] for c in chunks])
        for wv, gv in zip(want, got):
            torch.testing.assert_close(gv, wv, rtol=1e-4, atol=1e-4)


def test_capacity_counts_batches_and_renders():
    from streamchar.serving.capacity import Capacity

    cap = Capacity(0, {1: 0.2, 2: 0.3, 4: 0.5}, 0.1, 1.375)
    assert cap.round_seconds(2, max_batch=4) == pytest.approx(0.3 + 2 * 0.1)
    assert cap.round_seconds(3, max_batch=4) == pytest.approx(0.4 + 3 * 0.1)  # between the sizes timed
    assert cap.round_seconds(6, max_batch=4) == pytest.approx(0.5 + 0.3 + 6 * 0.1)  # a full batch and one of two
    assert cap.round_seconds(2, max_batch=1) == pytest.approx(2 * 0.2 + 2 * 0.1)  # one at a time
    cap.workers = 2
    assert cap.round_seconds(2, max_batch=1) == pytest.approx((2 * 0.2 + 2 * 0.1) / 2)  # shared by two workers


@pytest.mark.slow
def test_a_server_admits_what_it_measured_it_can_keep_real_time(shipped_pipeline):
    from streamchar.serving.capacity import BUDGET
    from streamchar.serving.settings import ServerSettings
    from streamchar.serving.state import ServerState

    state = ServerState(shipped_pipeline, ServerSettings(max_batch=4, threads=2))
    state.warm_up()
    m = state.measured
    assert sorted(m.generate_s) == [1, 2, 4] and m.render_s > 0
    assert m.generate_s[4] < 4 * m.generate_s[1]  # a batch costs less than its sessions one by one
    assert state.capacity == m.sessions >= 1
    assert m.workers == 2
    assert m.round_seconds(state.capacity, 4) <= BUDGET * m.period_s < m.round_seconds(state.capacity + 1, 4)
