from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.chunk_plan import (
    ChunkPlanError,
    ChunkSpec,
    chunk_start,
    count_chunks,
    make_plan,
)

TINY = ChunkSpec(frames=17, head=5, tail=4)


@st.composite
def specs(draw: st.DrawFn) -> ChunkSpec:
    head = 4 * draw(st.integers(0, 8)) + 1
    tail = 4 * draw(st.integers(1, 8))
    # Smallest N that is 1 mod 4 and longer than head + tail, plus some slack.
    low = (head + tail) // 4 + 1
    frames = 4 * draw(st.integers(low, low + 20)) + 1
    return ChunkSpec(frames=frames, head=head, tail=tail)


any_spec = st.one_of(st.just(ChunkSpec()), st.just(TINY), specs())


def mirrored(total: int, length: int) -> list[int]:
    """Oracle: 0..L-1, L-1..0, 0..L-1, ... long enough to index ``length`` positions."""
    seq: list[int] = []
    while len(seq) < length:
        seq += list(range(total)) + list(range(total - 1, -1, -1))
    return seq


def test_worked_example() -> None:
    plan = make_plan(300)
    assert plan.num_chunks == 5
    assert [c.start for c in plan.chunks] == [0, 60, 121, 181, 242]
    assert [c.end for c in plan.chunks] == [81, 141, 202, 262, 323]
    assert [c.overlap_prev for c in plan.chunks] == [0, 21, 20, 21, 20]
    assert [c.role for c in plan.chunks] == ["anchor", "cond", "base", "cond", "base"]
    assert plan.covered_frames == 323
    assert plan.output_frames == 300
    assert count_chunks(300) == 5
    # Last base chunk: 242..299 then the mirror 299, 298, ..., 277.
    assert plan.condition_indices(4) == list(range(242, 300)) + list(range(299, 276, -1))
    assert plan.dependencies(0) == ()
    assert plan.dependencies(2) == (0,)
    assert plan.dependencies(3) == (2, 4)
    assert plan.order() == [0, 2, 4, 1, 3]
    assert plan.ready(set()) == [0]
    assert plan.ready({0}) == [2, 4]
    assert plan.ready({0, 2}) == [4, 1]
    assert plan.ready({0, 1, 2, 3, 4}) == []


def test_chunk_start_formula() -> None:
    assert [chunk_start(i) for i in range(5)] == [0, 60, 121, 181, 242]
    assert [chunk_start(i, TINY) for i in range(4)] == [0, 12, 25, 37]


@settings(max_examples=300, deadline=None)
@given(total=st.integers(1, 3000), spec=any_spec)
def test_plan_properties(total: int, spec: ChunkSpec) -> None:
    plan = make_plan(total, spec)
    n, k = spec.frames, plan.num_chunks
    assert k % 2 == 1 and k == len(plan.chunks)
    assert k == 2 * max(0, math.ceil((total - n) / (2 * n - spec.head - spec.tail))) + 1

    starts = [c.start for c in plan.chunks]
    assert starts[0] == 0
    assert all(a < b for a, b in zip(starts, starts[1:], strict=False))
    for c in plan.chunks:
        assert c.end - c.start == n
        assert c.is_base == (c.index % 2 == 0)
    for prev, cur in zip(plan.chunks, plan.chunks[1:], strict=False):
        expected = spec.head if cur.index % 2 == 1 else spec.tail
        assert cur.overlap_prev == expected == prev.end - cur.start
    for a, b in zip(plan.chunks[::2], plan.chunks[2::2], strict=False):
        assert b.start >= a.end  # base chunks never overlap

    assert plan.covered_frames == plan.chunks[-1].end >= total
    if k > 1:  # minimal: two chunks fewer would not cover the video
        assert plan.chunks[-3].end < total
    assert plan.output_frames == total

    oracle = mirrored(total, plan.covered_frames)
    for c in plan.chunks:
        idx = plan.condition_indices(c.index)
        assert len(idx) == n
        assert all(0 <= j < total for j in idx)
        assert idx == oracle[c.start:c.end]
        inside = [p for p in range(c.start, c.end) if p < total]
        assert idx[:len(inside)] == inside  # identity inside the video
        past = range(max(c.start, total), min(c.end, 2 * total))
        assert idx[len(inside):len(inside) + len(past)] == [2 * total - 1 - p for p in past]
        if c.is_base and c.index > 0 and c.end > total >= c.start:
            # Spec's base-chunk rule: frames from start(i-1) to L, plus the reversed
            # last end-L of them, last N kept (valid while the mirror fits in that span).
            prev_start = plan.chunks[c.index - 1].start
            span = list(range(prev_start, total))
            if c.end - total <= len(span):
                padded = span + span[::-1][:c.end - total]
                assert idx == padded[-n:]

    check_dag(plan)


def check_dag(plan) -> None:
    order = plan.order()
    assert sorted(order) == list(range(plan.num_chunks))
    position = {c: i for i, c in enumerate(order)}
    for c in order:
        for d in plan.dependencies(c):
            assert 0 <= d < plan.num_chunks and position[d] < position[c]
    # Running ready() to completion finishes every chunk, each only once its deps are done.
    done: set[int] = set()
    while len(done) < plan.num_chunks:
        batch = plan.ready(done)
        assert batch, f"stuck with done={done}"
        for c in batch:
            assert c not in done and set(plan.dependencies(c)) <= done
        done |= set(batch)


@settings(max_examples=100, deadline=None)
@given(total=st.integers(1, 400), spec=any_spec, given_k=st.integers(1, 41),
       anchor_slot=st.integers(0, 20))
def test_given_chunk_count_any_length(total: int, spec: ChunkSpec, given_k: int,
                                      anchor_slot: int) -> None:
    k = given_k - 1 if given_k % 2 == 0 else given_k
    k = max(k, 1)
    anchor = 2 * (anchor_slot % ((k + 1) // 2))
    plan = make_plan(total, spec, num_chunks=given_k, anchor=anchor)
    assert plan.num_chunks == k
    assert plan.chunks[anchor].role == "anchor"
    assert sum(c.role == "anchor" for c in plan.chunks) == 1
    oracle = mirrored(total, plan.covered_frames)
    for c in plan.chunks:
        idx = plan.condition_indices(c.index)
        assert len(idx) == spec.frames and all(0 <= j < total for j in idx)
        assert idx == oracle[c.start:c.end]
    assert plan.output_frames == min(total, plan.covered_frames)
    check_dag(plan)


def test_chunks_starting_past_the_end() -> None:
    plan = make_plan(50, num_chunks=9)
    assert plan.chunks[-1].start > 50
    for c in plan.chunks:
        assert all(0 <= j < 50 for j in plan.condition_indices(c.index))
    tiny = make_plan(3, TINY, num_chunks=7)
    assert tiny.condition_indices(0)[:8] == [0, 1, 2, 2, 1, 0, 0, 1]
    assert make_plan(1, TINY, num_chunks=5).condition_indices(4) == [0] * 17


def test_short_video_with_padding_is_one_chunk() -> None:
    plan = make_plan(30)
    assert plan.num_chunks == 1
    assert plan.condition_indices(0)[:33] == list(range(30)) + [29, 28, 27]
    assert plan.output_frames == 30
    assert make_plan(81).num_chunks == 1


def test_no_padding_when_chunk_ends_exactly_at_the_end() -> None:
    plan = make_plan(323)
    assert plan.num_chunks == 5 and plan.output_frames == 323
    assert plan.condition_indices(4) == list(range(242, 323))
    assert make_plan(81).condition_indices(0) == list(range(81))


def test_pad_off() -> None:
    with pytest.raises(ChunkPlanError, match="shorter than one chunk of N frames"):
        count_chunks(80, pad=False)
    with pytest.raises(ChunkPlanError, match="80 frames"):
        make_plan(80, pad=False)
    assert count_chunks(81, pad=False) == 1
    assert count_chunks(300, pad=False) == 3  # floor(219 / 121) = 1
    plan = make_plan(300, pad=False)
    assert plan.covered_frames == 202 == plan.output_frames
    with pytest.raises(ChunkPlanError, match="--num-chunks 5"):
        make_plan(300, num_chunks=5, pad=False)


@settings(max_examples=100, deadline=None)
@given(total=st.integers(1, 3000), spec=any_spec)
def test_pad_off_never_runs_past_the_end(total: int, spec: ChunkSpec) -> None:
    if total < spec.frames:
        with pytest.raises(ChunkPlanError):
            make_plan(total, spec, pad=False)
        return
    plan = make_plan(total, spec, pad=False)
    assert plan.covered_frames <= total
    assert make_plan(total, spec, pad=True).num_chunks - plan.num_chunks in (0, 2)
    for c in plan.chunks:
        assert plan.condition_indices(c.index) == list(range(c.start, c.end))


@pytest.mark.parametrize(("spec", "match"), [
    (ChunkSpec(frames=80), "--frames 80"),
    (ChunkSpec(head=20), "--head 20: head length must be 1 mod 4"),
    (ChunkSpec(tail=21), "--tail 21"),
    (ChunkSpec(frames=21, head=13, tail=8), "must be less than --frames 21"),
    (ChunkSpec(frames=0), "--frames 0"),
    (ChunkSpec(tail=0), "--tail 0"),
])
def test_bad_spec(spec: ChunkSpec, match: str) -> None:
    with pytest.raises(ChunkPlanError, match=match):
        spec.validate()
    with pytest.raises(ChunkPlanError):
        make_plan(300, spec)


@pytest.mark.parametrize("anchor", [1, 3, 6, -2, 100])
def test_bad_anchor(anchor: int) -> None:
    with pytest.raises(ChunkPlanError, match=r"--anchor .*valid values: 0, 2, 4"):
        make_plan(300, anchor=anchor)


def test_other_anchor() -> None:
    plan = make_plan(300, anchor=2)
    assert [c.role for c in plan.chunks] == ["base", "cond", "anchor", "cond", "base"]
    assert plan.order() == [2, 0, 4, 1, 3]
    assert plan.dependencies(0) == (2,)
    assert plan.ready(set()) == [2]


def test_given_chunk_count() -> None:
    assert make_plan(300, num_chunks=6).num_chunks == 5
    assert make_plan(300, num_chunks=2).num_chunks == 1
    assert make_plan(300, num_chunks=7).num_chunks == 7
    for bad in (0, -3):
        with pytest.raises(ChunkPlanError, match="--num-chunks"):
            make_plan(300, num_chunks=bad)


@pytest.mark.parametrize("total", [0, -5])
def test_empty_video(total: int) -> None:
    with pytest.raises(ChunkPlanError, match="at least 1"):
        make_plan(total)
    with pytest.raises(ChunkPlanError):
        count_chunks(total)
