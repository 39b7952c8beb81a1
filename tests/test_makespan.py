"""bench/makespan.py: the scheduling simulation obeys the dependency graph and adds up."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("makespan", ROOT / "bench" / "makespan.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["makespan"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


mk = _load()

DEFAULT = mk.Times.load(mk.DEFAULT_TIMES)
SMALL = mk.Times(anchor_s=10, base_s=8, cond_s=6, dit_load_s=1, merge_s=2)
VARIED = [DEFAULT, SMALL, mk.Times(anchor_s=300, base_s=900, cond_s=200, dit_load_s=120,
                                   merge_s=30),
          mk.Times(anchor_s=600, base_s=600, cond_s=600, dit_load_s=0, merge_s=0)]
SIMS = {"deps": mk.simulate, "release": mk.simulate_release}


def chunk_bars(result) -> dict[int, object]:
    return {b.idx: b for b in result.bars if b.what in ("anchor", "base", "cond")}


@pytest.mark.parametrize("policy", sorted(SIMS))
@pytest.mark.parametrize("num_chunks", [1, 3, 5, 31])
def test_dependency_order_never_violated(policy: str, num_chunks: int) -> None:
    plan = mk.plan_for(num_chunks=num_chunks)
    for times in VARIED:
        for gpus in range(1, 10):
            result = SIMS[policy](plan, times, gpus)
            bars = chunk_bars(result)
            assert sorted(bars) == list(range(plan.num_chunks))
            for i, bar in bars.items():
                for d in plan.dependencies(i):
                    assert bars[d].end <= bar.start, (policy, gpus, i, d)


def test_check_schedule_catches_an_early_chunk() -> None:
    plan = mk.plan_for(num_chunks=5)
    result = mk.simulate(plan, SMALL, 2)
    cond = next(b for b in result.bars if b.what == "cond")
    result.bars[result.bars.index(cond)] = replace(cond, start=0.0, end=SMALL.cond_s)
    with pytest.raises(mk.ScheduleError, match="before its dependency"):
        mk.check_schedule(plan, result)


@pytest.mark.parametrize("times", VARIED)
def test_one_gpu_is_the_serial_sum(times) -> None:
    plan = mk.plan_for()  # K = 31
    assert plan.num_chunks == 31
    result = mk.simulate(plan, times, 1)
    work = times.anchor_s + 15 * times.base_s + 15 * times.cond_s
    assert result.work == pytest.approx(work)
    assert (result.loads, result.switches) == (2, 1)  # base DiT, then once the cond DiT
    assert result.makespan == pytest.approx(work + 2 * times.dit_load_s + times.merge_s)
    assert result.idle == [pytest.approx(0.0)]


@pytest.mark.parametrize("policy", sorted(SIMS))
def test_makespan_at_least_ideal_and_bound(policy: str) -> None:
    plan = mk.plan_for()
    for times in VARIED:
        for gpus in (1, 2, 3, 4, 8, 16):
            r = SIMS[policy](plan, times, gpus)
            assert r.makespan >= r.ideal - 1e-9
            assert r.makespan >= r.bound - 1e-9 >= mk.critical_path(plan, times) - 1e-9
            assert all(idle >= -1e-9 for idle in r.idle)


@pytest.mark.parametrize("policy", sorted(SIMS))
def test_more_gpus_never_slower(policy: str) -> None:
    plan = mk.plan_for()
    for times in VARIED:
        spans = [SIMS[policy](plan, times, g).makespan for g in range(1, 17)]
        assert all(b <= a + 1e-9 for a, b in zip(spans, spans[1:], strict=False)), spans


def test_switches_on_a_small_plan() -> None:
    """K = 5 on 2 GPUs, worked by hand (anchor 10, base 8, cond 6, load 1, merge 2)."""
    plan = mk.plan_for(num_chunks=5)
    deps = mk.simulate(plan, SMALL, 2)
    # GPU 0: load, anchor 0 [1, 11], base 2 [11, 19], switch, cond 1 [20, 26].
    # GPU 1: idle until 11, load, base 4 [12, 20], switch, cond 3 [21, 27], merge [27, 29].
    got = {(b.gpu, b.what, b.idx, b.start, b.end) for b in deps.bars}
    assert got == {(0, "load", 0, 0, 1), (0, "anchor", 0, 1, 11), (0, "base", 2, 11, 19),
                   (0, "load", 1, 19, 20), (0, "cond", 1, 20, 26),
                   (1, "load", 4, 11, 12), (1, "base", 4, 12, 20), (1, "load", 3, 20, 21),
                   (1, "cond", 3, 21, 27), (1, "merge", None, 27, 29)}
    assert (deps.loads, deps.switches, deps.makespan) == (4, 2, 29)
    assert deps.idle == [pytest.approx(3), pytest.approx(11)]
    # The release: a new process per phase reloads the base DiT on GPU 0 (a load, not a
    # switch); each GPU switches once, to the cond DiT.
    rel = mk.simulate_release(plan, SMALL, 2)
    assert (rel.loads, rel.switches, rel.makespan) == (5, 2, 29)
    one = mk.simulate(plan, SMALL, 1)
    assert (one.loads, one.switches) == (2, 1)


def test_cli_writes_json_png_and_table(tmp_path: Path, capsys) -> None:
    times = tmp_path / "t.json"
    times.write_text(json.dumps({"anchor_s": 10, "base_s": 8, "cond_s": 6, "dit_load_s": 1,
                                 "merge_s": 2, "source": "test"}))
    assert mk.main(["--times", str(times), "--out", str(tmp_path / "out"),
                    "--chunks", "7", "--gpus", "1", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-6].startswith("| G | policy | makespan") and out[-1].startswith("| 2 |")
    report = json.loads((tmp_path / "out" / mk.JSON_NAME).read_text())
    assert report["plan"]["chunks"] == 7 and len(report["results"]) == 4
    assert report["results"][0]["makespan_s"] == pytest.approx(
        10 + 3 * 8 + 3 * 6 + 3 * 1 + 2)  # the release on 1 GPU: three loads
    png = tmp_path / "out" / mk.PNG_NAME
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 200_000
