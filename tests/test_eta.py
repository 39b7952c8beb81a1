"""The session ETA counts every chunk's non-sampling time, as measured (issue #15)."""

from __future__ import annotations

import pytest

from sessions.eta import session_eta


def test_nothing_measured_yet_is_unknown() -> None:
    assert session_eta([(10, 0, "ready", None, None)] * 3, 1) is None


def test_sampling_and_the_rest_of_each_chunk_both_count() -> None:
    # Two done chunks: 10 steps of 2 s plus 30 s of loading/encoding/decoding each.
    done = [(10, 10, "done", 2.0, 50.0), (10, 10, "done", 2.0, 50.0)]
    running = (10, 4, "running", 2.0, None)  # 6 steps left, and half the rest, say
    waiting = [(10, 0, "ready", None, None), (10, 0, "pending", None, None)]
    eta = session_eta([*done, running, *waiting], live_workers=1)
    assert eta == pytest.approx(6 * 2 + 15 + 2 * (10 * 2 + 30))
    assert session_eta([*done, running, *waiting], live_workers=2) == pytest.approx(eta / 2)


def test_a_tiny_session_is_mostly_the_rest_not_the_steps() -> None:
    """The demo's complaint: steps of 50 ms, chunks of a minute; the old formula said
    seconds where minutes were left."""
    done = (10, 10, "done", 0.05, 60.5)
    eta = session_eta([done, *[(10, 0, "ready", None, None)] * 4], 1)
    assert eta == pytest.approx(4 * 60.5)
