"""Span decoding with hand-made logits: the right span wins, and spans never leave the context."""

from __future__ import annotations

import numpy as np
import pytest

from bot.core.reader import SpanCandidate, decode_spans

LOW = -10.0


def window(seq_len: int = 12, context: tuple[int, int] = (5, 11)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat logits and a mask: [CLS] q q q [SEP] c c c c c c [SEP] by default (context = positions 5..10)."""
    mask = np.zeros(seq_len, dtype=bool)
    mask[context[0] : context[1]] = True
    return np.full(seq_len, LOW), np.full(seq_len, LOW), mask


def test_best_span_is_the_highest_start_and_end():
    start, end, mask = window()
    start[6], end[8] = 8.0, 8.0
    candidates, no_answer = decode_spans(start, end, mask, max_answer_tokens=30)
    assert (candidates[0].start_token, candidates[0].end_token) == (6, 8)
    assert candidates[0].logit == pytest.approx(16.0)
    assert candidates[0].score == pytest.approx(1.0, abs=1e-6)
    assert no_answer == pytest.approx(0.0, abs=1e-6)


def test_candidates_are_sorted_best_first_and_limited_to_top_n():
    start, end, mask = window()
    start[5:11] = [1.0, 3.0, 1.5, 0.0, 0.0, 0.0]
    end[5:11] = [0.0, 0.0, 3.0, 2.0, 1.0, 0.0]
    candidates, _ = decode_spans(start, end, mask, max_answer_tokens=30, top_n=3)
    assert [(c.start_token, c.end_token) for c in candidates] == [(6, 7), (6, 8), (7, 7)]
    assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)


def test_spans_outside_the_context_are_never_chosen():
    start, end, mask = window()
    start[2], end[3] = 20.0, 20.0  # the question scores highest
    start[11], end[11] = 20.0, 20.0  # so does the final [SEP]
    start[7], end[9] = 1.0, 1.0
    candidates, _ = decode_spans(start, end, mask, max_answer_tokens=30, top_n=50)
    assert candidates
    assert all(mask[c.start_token] and mask[c.end_token] for c in candidates)
    assert (candidates[0].start_token, candidates[0].end_token) == (7, 9)


def test_end_before_start_is_never_returned():
    start, end, mask = window()
    start[9], end[6] = 10.0, 10.0  # best start comes after best end
    candidates, _ = decode_spans(start, end, mask, max_answer_tokens=30, top_n=50)
    assert all(c.start_token <= c.end_token for c in candidates)
    assert (candidates[0].start_token, candidates[0].end_token) != (9, 6)


def test_spans_longer_than_max_answer_tokens_are_dropped():
    start, end, mask = window(seq_len=40, context=(5, 39))
    start[6], end[30] = 10.0, 10.0  # 25 tokens
    candidates, _ = decode_spans(start, end, mask, max_answer_tokens=10, top_n=50)
    assert all(c.end_token - c.start_token + 1 <= 10 for c in candidates)
    assert (6, 30) not in [(c.start_token, c.end_token) for c in candidates]
    long_allowed, _ = decode_spans(start, end, mask, max_answer_tokens=25)
    assert (long_allowed[0].start_token, long_allowed[0].end_token) == (6, 30)


def test_no_answer_probability_is_high_when_cls_dominates():
    start, end, mask = window()
    start[0], end[0] = 10.0, 10.0
    start[6], end[7] = 1.0, 1.0
    candidates, no_answer = decode_spans(start, end, mask, max_answer_tokens=30)
    assert no_answer > 0.99
    assert candidates[0].score < 0.01


def test_scores_are_probabilities():
    rng = np.random.default_rng(0)
    for _ in range(50):
        start, end = rng.normal(0, 5, 64), rng.normal(0, 5, 64)
        mask = np.zeros(64, dtype=bool)
        mask[rng.integers(1, 20) : rng.integers(30, 63)] = True
        candidates, no_answer = decode_spans(start, end, mask, max_answer_tokens=8, top_n=20)
        assert 0.0 <= no_answer <= 1.0
        assert all(0.0 <= c.score <= 1.0 for c in candidates)
        assert no_answer + sum(c.score for c in candidates) <= 1.0 + 1e-9
        assert all(
            mask[c.start_token] and mask[c.end_token] and 0 <= c.end_token - c.start_token < 8 for c in candidates
        )


def test_window_without_context_has_no_candidates():
    start, end, _ = window()
    candidates, no_answer = decode_spans(start, end, np.zeros(12, dtype=bool), max_answer_tokens=30)
    assert (candidates, no_answer) == ([], pytest.approx(1.0))


def test_single_token_context():
    start, end, mask = window(context=(5, 6))
    assert decode_spans(start, end, mask, max_answer_tokens=1)[0] == [
        SpanCandidate(5, 5, pytest.approx(0.25), pytest.approx(2 * LOW))
    ]


def test_non_positive_max_answer_tokens_is_rejected():
    start, end, mask = window()
    with pytest.raises(ValueError, match="max_answer_tokens must be positive, got 0"):
        decode_spans(start, end, mask, max_answer_tokens=0)
