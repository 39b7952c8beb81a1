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


def test_each_kind_of_chunk_at_its_own_rate() -> None:
    """An anchor step also writes the K/V cache (+14 % at full size): a base chunk's
    steps are not counted at the anchor's rate once a base step is measured."""
    anchor = (10, 10, "done", 3.0, 30.0, "anchor")
    base = (10, 5, "running", 2.0, None, "base")
    waiting = [(10, 0, "ready", None, None, "base"), (10, 0, "pending", None, None, "cond")]
    eta = session_eta([anchor, base, *waiting], 1)
    # base: 5 + 10 steps at 2 s; cond (not measured): 10 steps at the mean 2.5 s; no rest
    assert eta == pytest.approx(15 * 2.0 + 10 * 2.5)


def test_history_stands_in_until_this_session_measures() -> None:
    """Issue #15: once there is history, the machine's past sessions at the same size."""
    chunks = [(10, 0, "ready", None, None, "anchor"), (10, 0, "pending", None, None, "base")]
    history = [(10, 10, "done", 4.0, 50.0, "anchor"), (10, 10, "done", 2.0, 30.0, "base")]
    assert session_eta(chunks, 1) is None
    assert session_eta(chunks, 1, history) == pytest.approx(10 * 4.0 + 10 * 2.0 + 2 * 10.0)
    measured = [(10, 2, "running", 1.0, None, "anchor"), (10, 0, "pending", None, None, "base")]
    # Its own step rate wins over history; the rest of a chunk still comes from history.
    assert session_eta(measured, 1, history) == pytest.approx(8 * 1.0 + 5 + 10 * 1.0 + 10)


def test_the_store_finds_past_sessions_of_the_same_size(tmp_path) -> None:
    from sessions.eta import eta_of
    from sessions.store import Store

    store = Store(tmp_path / "db.sqlite")
    pid = store.create_project("p", image="i", pose="p", hand="h", prompt="a man",
                               framing="half-body")

    def session(height: int) -> int:
        sid = store.create_session(pid, settings={"height": height, "width": 720,
                                                  "frames": 81}, seed=1, steps=10, cfg=5.0,
                                   share_steps="0 2", share_blocks="34 40", anchor=0,
                                   budget="none", ckpt="/c", device="cuda", gpus="",
                                   workspace="")
        store.init_chunks(sid, [{"idx": 0, "role": "anchor", "start_frame": 0,
                                 "end_frame": 81, "deps": [], "steps": 10}])
        return sid

    old, other_size, new = session(1280), session(640), session(1280)
    for sid, sps in ((old, 3.0), (other_size, 0.5)):
        w = store.register_worker(sid, pid=1, host="h", device="cuda")
        store.claim_chunk(sid, w)
        store.finish_chunk(sid, 0, seconds=40.0, seconds_per_step=sps, worker_id=w)
    assert [r["seconds_per_step"] for r in store.past_chunk_times(new)] == [3.0]
    assert eta_of(store, new, store.chunks(new), 1) == pytest.approx(10 * 3.0 + 10.0)
