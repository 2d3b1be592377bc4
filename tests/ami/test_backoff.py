"""Backoff: the jitter window doubles up to the cap, the draw is uniform in it, reset."""

from __future__ import annotations

import itertools

import pytest

from bridge.ami.backoff import Backoff, full_jitter


def test_full_jitter_scales_the_window_by_the_random_draw() -> None:
    assert full_jitter(0, base=0.5, cap=30.0, rng=lambda: 1.0) == 0.5
    assert full_jitter(3, base=0.5, cap=30.0, rng=lambda: 1.0) == 4.0
    assert full_jitter(3, base=0.5, cap=30.0, rng=lambda: 0.25) == 1.0
    assert full_jitter(3, base=0.5, cap=30.0, rng=lambda: 0.0) == 0.0


def test_full_jitter_never_exceeds_the_cap_even_for_huge_attempts() -> None:
    assert full_jitter(6, base=0.5, cap=30.0, rng=lambda: 1.0) == 30.0
    assert full_jitter(10_000, base=0.5, cap=30.0, rng=lambda: 0.999) == pytest.approx(29.97)


@pytest.mark.parametrize(
    ("attempt", "base", "cap"), [(-1, 0.5, 1.0), (0, -0.5, 1.0), (0, 0.5, -1.0)]
)
def test_full_jitter_rejects_negative_inputs(attempt: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        full_jitter(attempt, base=base, cap=cap)


def test_backoff_windows_double_until_the_cap() -> None:
    backoff = Backoff(base=0.1, cap=1.0, rng=lambda: 1.0)
    delays = [backoff.next_delay() for _ in range(7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    assert backoff.attempt == 7


def test_backoff_passes_every_draw_through_the_rng() -> None:
    draws = itertools.cycle([0.5, 0.0, 0.9])
    backoff = Backoff(base=1.0, cap=100.0, rng=lambda: next(draws))
    assert [backoff.next_delay() for _ in range(3)] == pytest.approx([0.5, 0.0, 3.6])


def test_backoff_reset_starts_from_the_smallest_window_again() -> None:
    backoff = Backoff(base=0.1, cap=10.0, rng=lambda: 1.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() == pytest.approx(0.1)


def test_backoff_with_the_real_rng_stays_inside_the_window() -> None:
    backoff = Backoff(base=0.2, cap=2.0)
    for attempt in range(50):
        assert 0.0 <= backoff.next_delay() <= min(2.0, 0.2 * 2**attempt)


def test_backoff_rejects_a_negative_cap() -> None:
    with pytest.raises(ValueError):
        Backoff(base=1.0, cap=-1.0)
