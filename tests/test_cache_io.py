"""Anchor-cache I/O: tensor files, the background writer and the block prefetcher."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.cache_io import AsyncTensorWriter, BlockPrefetcher
from engine.kv_cache import AnchorCache, CacheMismatchError
from engine.kv_share import BaseSharer, ShareSettings
from engine.tensor_file import TensorFileError, read_tensor, write_tensor_file


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float16])
def test_tensor_files_are_safetensors_both_ways(tmp_path: Path, dtype: torch.dtype) -> None:
    t = torch.randn(3, 5, 7).to(dtype)
    write_tensor_file(tmp_path / "ours.safetensors", {"x": t, "y": t[:1] * 2},
                      metadata={"why": "test"})
    theirs = load_file(str(tmp_path / "ours.safetensors"))
    assert torch.equal(theirs["x"], t) and torch.equal(theirs["y"], t[:1] * 2)

    save_file({"a": t[1:].clone(), "x": t}, str(tmp_path / "theirs.safetensors"))
    assert torch.equal(read_tensor(tmp_path / "theirs.safetensors", "x"), t)
    buf = torch.empty(3, 5, 7, dtype=dtype)
    assert read_tensor(tmp_path / "theirs.safetensors", "x", out=buf) is buf
    assert torch.equal(buf, t)


def test_tensor_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    write_tensor_file(path, {"x": torch.ones(1000)})
    with pytest.raises(TensorFileError, match="buffer is"):
        read_tensor(path, "x", out=torch.empty(10))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(TensorFileError, match=r"x\.safetensors: truncated"):
        read_tensor(path, "x")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file at all")
    with pytest.raises(TensorFileError, match="junk.safetensors: not a tensor file"):
        read_tensor(tmp_path / "junk.safetensors", "x")


def test_writer_writes_in_the_background_and_flush_waits(tmp_path: Path) -> None:
    w = AsyncTensorWriter(max_pending=2)
    tensors = [torch.full((256, 64), float(i)) for i in range(6)]
    for i, t in enumerate(tensors):
        w.submit(tmp_path / f"t{i}.safetensors", "x", t)
        t.fill_(-1.0)  # the caller may reuse its tensor at once
    w.flush()
    for i in range(6):
        assert torch.equal(read_tensor(tmp_path / f"t{i}.safetensors", "x"),
                           torch.full((256, 64), float(i)))
    assert w.bytes_written == 6 * 256 * 64 * 4
    w.close()


def test_writer_error_reaches_flush_and_leaves_no_partial_file(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    w = AsyncTensorWriter()
    w.submit(tmp_path / "blocker" / "t.safetensors", "x", torch.ones(4))
    with pytest.raises(OSError):  # raised by the next submit or by flush, whichever comes
        w.submit(tmp_path / "after.safetensors", "x", torch.ones(4))
        w.flush()
    assert not (tmp_path / "after.safetensors").exists()  # dropped after the failure
    w.flush()  # the error is reported once
    w.close()


def test_prefetcher_hands_out_each_block(tmp_path: Path) -> None:
    for b in range(3, 6):
        write_tensor_file(tmp_path / f"{b}.safetensors", {"x": torch.full((4, 4), float(b))})
    p = BlockPrefetcher("cpu")
    p.start(range(3, 6), lambda b: tmp_path / f"{b}.safetensors", "x")
    for b in range(3, 6):
        assert torch.equal(p.get(b), torch.full((4, 4), float(b)))
    assert p.bytes_read == 3 * 16 * 4
    p.start([9], lambda b: tmp_path / "missing.safetensors", "x")
    with pytest.raises(FileNotFoundError):
        p.get(9)
    p.close()


def test_base_chunk_refuses_a_cache_with_a_missing_file(tmp_path: Path) -> None:
    cache = AnchorCache(tmp_path / "anchor")
    cache.start({"seed": 1})
    cache.save_input(0, 2, "pos", torch.ones(1, 4, 8))
    cache.finish()
    share = ShareSettings(steps=(0, 1), blocks=(2, 4), max_block_idx=1)
    hook = BaseSharer(cache, share, 0, (1, 2, 2), "cpu")
    with pytest.raises(CacheMismatchError, match="x_s000_b003_pos.safetensors: missing"):
        hook.begin(0, "pos")


def test_a_format_1_cache_is_refused_and_replaced(tmp_path: Path) -> None:
    import json

    cache = AnchorCache(tmp_path / "anchor")
    cache.root.mkdir(parents=True)
    old = {"format": 1, "settings": {"seed": 1}, "complete": True}
    (cache.root / "manifest.json").write_text(json.dumps(old))
    (cache.root / "kv_s000_b034_pos.safetensors").write_bytes(b"old")
    with pytest.raises(CacheMismatchError, match="format 1.*generated again"):
        cache.check({"seed": 1})
    cache.start({"seed": 1})  # the anchor starts over instead of mixing formats
    assert not (cache.root / "kv_s000_b034_pos.safetensors").exists()


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA device: pinned-memory side-stream copies "
                           "(run on the GPU by bench/dit_step.py)")
def test_cuda_round_trip(tmp_path: Path) -> None:
    x = torch.randn(1, 1000, 64, device="cuda", dtype=torch.bfloat16)
    w = AsyncTensorWriter()
    w.submit(tmp_path / "x.safetensors", "x", x)
    w.flush()
    p = BlockPrefetcher("cuda")
    p.start([0], lambda b: tmp_path / "x.safetensors", "x")
    assert torch.equal(p.get(0), x)


def test_after_runs_behind_earlier_writes_with_a_host_copy(tmp_path: Path) -> None:
    w = AsyncTensorWriter()
    seen: list[tuple[bool, torch.Tensor]] = []
    w.submit(tmp_path / "a.safetensors", "x", torch.ones(8))
    t = torch.full((3,), 7.0)
    w.after(lambda host: seen.append(((tmp_path / "a.safetensors").exists(), host)), t)
    t.fill_(0.0)  # the caller's tensor may change at once: the action got a copy
    w.flush()
    assert len(seen) == 1 and seen[0][0] and torch.equal(seen[0][1], torch.full((3,), 7.0))
    w.close()


# -- the sampler saves an anchor step only once that step's cache is on disk -----------

class _SharingStandIn(torch.nn.Module):
    """A stand-in DiT that offers the hook one share block's attention input per pass."""

    def __init__(self) -> None:
        super().__init__()
        self.patch_embedding = torch.nn.Conv3d(36, 4, 1)

    def forward(self, latents, cond, hand, ref, context, timestep, hook=None):
        x = latents.reshape(1, -1, 4)
        for block in range(4):
            hook.self_attention(block, x, x, x, x.shape[1], x, lambda t: (t, t))
        hook.end_forward()
        return latents * 0.5 + context.mean()


def _stand_in_inputs():
    from engine.sampler import ChunkInputs

    shape = (1, 20, 2, 2, 2)
    return ChunkInputs(cond=torch.zeros(shape), hand=None, ref=None,
                       context_pos=torch.full((1, 1, 1), 0.25),
                       context_neg=torch.full((1, 1, 1), -0.5))


def _gate_cache_writes(monkeypatch: pytest.MonkeyPatch, fail_on: str | None = None):
    """Cache writes wait for the returned event (and ``fail_on`` files fail)."""
    import threading

    import engine.cache_io as cache_io

    gate, real = threading.Event(), cache_io.write_tensor_file

    def gated(path: Path, tensors, metadata=None) -> None:
        assert gate.wait(120), "the test never opened the gate"
        if fail_on is not None and fail_on in path.name:
            raise OSError(28, "No space left on device", str(path))
        real(path, tensors, metadata)

    monkeypatch.setattr(cache_io, "write_tensor_file", gated)
    return gate


def _record(tmp_path: Path, on_step) -> tuple[AnchorCache, Path, torch.Tensor | None]:
    from engine.kv_share import AnchorRecorder
    from engine.sampler import sample

    cache = AnchorCache(tmp_path / "anchor")
    cache.start({"seed": 1})
    share = ShareSettings(steps=(0, 2), blocks=(2, 3), max_block_idx=1)
    hook = AnchorRecorder(cache, share, 0, (2, 1, 1))
    state = tmp_path / "state.safetensors"
    out = sample(_SharingStandIn(), _stand_in_inputs(), seed=1, steps=3, cfg_scale=5.0,
                 shift=5.0, device="cpu", hook=hook, state_path=state, state_key={},
                 on_step=on_step)
    return cache, state, out


def test_anchor_computes_on_while_its_cache_is_written_and_saves_steps_after_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.sampler import load_state

    gate = _gate_cache_writes(monkeypatch)
    seen: list[tuple[int, bool]] = []
    state = tmp_path / "state.safetensors"

    def on_step(done: int, total: int, seconds: float) -> None:
        seen.append((done, state.exists()))
        if done == 2:
            gate.set()

    cache, state, out = _record(tmp_path, on_step)
    # Steps 1 and 2 computed while step 1's cache files were still unwritten, and no
    # state was saved ahead of them; the sampler returns only once everything is saved.
    assert seen[:2] == [(1, False), (2, False)]
    assert out is not None and load_state(state, {})[0] == 3
    assert sorted(p.name for p in cache.root.glob("x_*")) == [
        f"x_s{s:03d}_b002_{p}.safetensors" for s in (0, 1) for p in ("neg", "pos")]


def test_a_failed_cache_write_never_lets_its_step_count_as_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.sampler import load_state

    gate = _gate_cache_writes(monkeypatch, fail_on="x_s001_b002_pos")
    gate.set()
    with pytest.raises(OSError, match="No space left"):
        _record(tmp_path, None)
    # Step 0's files and state were written; step 1's state never was: a resume
    # records step 1 again.
    assert load_state(tmp_path / "state.safetensors", {})[0] == 1
