"""A chunk's phases: announced in order, timed into done.json, and a pause honoured
between them (not only between sampling steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.job import Job, JobInputs, JobSettings

PHASES = ["loading", "encoding", "sampling", "decoding", "writing"]


def tiny_job(out: Path, ckpt: Path, inputs: Path, events: list) -> Job:
    job = Job(out, JobInputs(image=inputs / "reference.png", pose=inputs / "pose.mp4",
                             hand=inputs / "hand.mp4",
                             prompt=(inputs / "prompt.txt").read_text()),
              JobSettings(height=64, width=32, frames=17, head=5, tail=4, steps=2,
                          share_blocks=(2, 4)), ckpt=ckpt, progress=events.append)
    job.prepare()
    return job


@pytest.mark.usefixtures("one_torch_thread")
def test_phases_are_announced_in_order_and_timed(tiny_ckpt: Path, sample_dir: Path,
                                                 tmp_path: Path) -> None:
    events: list = []
    job = tiny_job(tmp_path, tiny_ckpt, sample_dir, events)
    assert job.run_chunk(0) is not None
    announced = [e.message for e in events if e.kind == "phase"]
    assert announced == PHASES
    done = json.loads((tmp_path / "chunks" / "000" / "done.json").read_text())
    phases = done["extra"]["phases"]
    assert set(phases) == set(PHASES) and all(v >= 0 for v in phases.values())
    assert {"t5_load", "clip_load", "vae_load", "dit_load", "dit_merge"} <= set(
        done["extra"]["model_loading"])
    # A worker runs chunks without run(): its step events still carry the measured rate
    # and the chunk's ETA (issue #15: `-- s/step`, `ETA --:--` at step 7/10).
    steps = [e for e in events if e.kind == "step"]
    assert steps and all(e.seconds_per_step and e.eta_chunk is not None for e in steps)
    assert steps[-1].eta_chunk == 0
    # The chunk's stored condition latents go once it is done.
    assert not (tmp_path / "chunks" / "000" / "conditions.safetensors").exists()


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("stop_after", ["loading", "encoding"])
def test_a_pause_is_honoured_between_phases(tiny_ckpt: Path, sample_dir: Path,
                                            tmp_path: Path, stop_after: str) -> None:
    events: list = []
    job = tiny_job(tmp_path, tiny_ckpt, sample_dir, events)

    def should_stop() -> bool:  # true once the phase after `stop_after` would begin
        seen = [e.message for e in events if e.kind == "phase"]
        return stop_after in seen

    assert job.run_chunk(0, should_stop=should_stop) is None
    assert [e.message for e in events if e.kind == "phase"][-1] == stop_after
    chunk = tmp_path / "chunks" / "000"
    assert not (chunk / "state.safetensors").exists()  # no step was run
    assert not (chunk / "done.json").exists()
    # Stopped after encoding, the encoded conditions are kept for the resume.
    assert (chunk / "conditions.safetensors").exists() == (stop_after == "encoding")
