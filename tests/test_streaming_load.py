"""Loading weights straight to where they live: file pages handed back, pinned slabs,
pieces copied on threads, and a DiT whose streamed half goes to host memory (issue #13)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from engine.budget import apply_budget, resident_parameters, streamed_bytes
from engine.checkpoint.dit_loader import (
    KEY_PREFIX,
    LORA_A,
    LORA_B,
    load_dit,
    read_shards,
    write_dit_folder,
)
from engine.checkpoint.mapped import open_mapped, release_pages
from engine.checkpoint.staging import ParallelCopy
from engine.models.dit import PoseGenDiT
from engine.pinned_arena import PinnedArena
from tests.test_dit import tiny_cfg, tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rss_file_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/self/status")


# -- file pages -----------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and /proc are Linux's")
def test_released_pages_leave_the_process_and_the_values_stay(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    want = torch.arange(16 << 20, dtype=torch.int32)  # 64 MiB
    torch.save({"w": want}, path)
    sd, mapped = open_mapped(path)
    assert mapped
    before = _rss_file_kib()
    assert int(sd["w"].sum()) == int(want.sum())  # touches every page
    touched = _rss_file_kib()
    assert touched - before > 60 << 10
    release_pages(sd["w"])
    assert touched - _rss_file_kib() > 60 << 10  # the pages went back to the page cache
    assert torch.equal(sd["w"], want)  # and a later read maps them again from the file


def test_a_legacy_format_shard_is_read_whole_and_loads_intact(tmp_path: Path) -> None:
    """Files torch cannot map (the pre-zip format) are read plainly; their memory is the
    process's own, so the loader must never hand its pages back (that zeroes them)."""
    model = tiny_model(tiny_cfg(num_layers=1))
    zip_dir, legacy_dir = tmp_path / "zip", tmp_path / "legacy"
    write_dit_folder(zip_dir, model, shards=1)
    legacy_dir.mkdir()
    (legacy_dir / "model_config.json").write_bytes((zip_dir / "model_config.json").read_bytes())
    raw = read_shards(zip_dir)
    torch.save(raw, legacy_dir / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    assert open_mapped(legacy_dir / "pytorch_model.bin")[1] is False
    a, b = load_dit(zip_dir), load_dit(legacy_dir)
    for k, v in a.state_dict().items():
        assert torch.equal(b.state_dict()[k], v), k
    assert any(float(v.abs().sum()) > 0 for v in b.state_dict().values())


# -- copies in pieces ---------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 3])
def test_parallel_copy_gives_the_same_bytes(tmp_path: Path, threads: int) -> None:
    g = torch.Generator().manual_seed(0)
    tensors = {"f32": torch.randn(1001, 37, generator=g),
               "bf16": torch.randn(513, 3, 3, generator=g).to(torch.bfloat16),
               "int": torch.randint(0, 9, (7,), generator=g),
               "empty": torch.empty(0, 4),
               "scalar": torch.tensor(3.5)}
    torch.save(tensors, tmp_path / "t.pt")
    sd, mapped = open_mapped(tmp_path / "t.pt")
    copier = ParallelCopy(threads=threads, piece_bytes=1000)  # many uneven pieces
    try:
        for k, v in sd.items():
            assert torch.equal(copier.to(v, "cpu", mapped), tensors[k]), k
        view = tensors["f32"].t()  # not contiguous
        dst = torch.empty(view.shape)
        copier.copy_into(dst, view)
        assert torch.equal(dst, view)
        with pytest.raises(ValueError, match="dtype"):
            copier.copy_into(torch.empty(3), torch.zeros(3, dtype=torch.float64))
    finally:
        copier.close()


# -- pinned slabs ---------------------------------------------------------------------------


def test_arena_packs_views_into_whole_slabs_without_overlap() -> None:
    slabs: list[int] = []

    def allocate(n: int) -> torch.Tensor:
        slabs.append(n)
        return torch.empty(n, dtype=torch.uint8)

    # A DiT block's streamed weights, scaled down: ten 52 MB-like, two 141 MB-like.
    sizes = ([(64, 64)] * 10 + [(173, 64)] * 2) * 6
    total = sum(r * c * 2 for r, c in sizes)
    arena = PinnedArena(total, slab_bytes=1 << 16, allocate=allocate)
    views = [arena.take(s, torch.bfloat16) for s in sizes]
    assert all(n & (n - 1) == 0 for n in slabs)  # powers of two: no allocator round-up
    assert all(n <= 1 << 16 for n in slabs)
    assert arena.slab_total == sum(slabs) and arena.slab_total <= 1.15 * total
    for i, v in enumerate(views):
        v.fill_(i)
    for i, v in enumerate(views):
        assert v.shape == sizes[i] and v.dtype == torch.bfloat16
        assert bool((v == i).all()), i  # no view overlaps another
        assert (v.data_ptr() - v.untyped_storage().data_ptr()) % 512 == 0


def test_arena_takes_a_tensor_larger_than_a_slab() -> None:
    arena = PinnedArena(0, slab_bytes=1024, allocate=lambda n: torch.empty(n, dtype=torch.uint8))
    big = arena.take((3000,), torch.uint8)
    small = arena.take((10,), torch.float32)
    big.fill_(1)
    small.fill_(2.0)
    assert bool((big == 1).all()) and big.numel() == 3000


# -- the DiT, streamed half to host memory --------------------------------------------------


def test_resident_parameters_are_what_apply_budget_keeps() -> None:
    model = tiny_model(tiny_cfg(num_layers=3))
    total = sum(p.numel() for p in model.parameters())
    with torch.device("meta"):
        shapes = PoseGenDiT(model.cfg)
    for budget in (None, 0, total // 3, total // 2, total):
        names = resident_parameters(shapes, budget)
        placed = tiny_model(tiny_cfg(num_layers=3))
        # A distinct (but equivalent) offload device tells streamed layers apart.
        apply_budget(placed, budget, device="cpu", dtype=torch.float32, offload_device="cpu:0")
        kept = {n for n, p in placed.named_parameters()}
        streamed = set()
        for name, m in placed.named_modules():
            if str(getattr(m, "onload_device", "cpu")) == "cpu:0":
                streamed |= {f"{name}.{p}" for p, _ in m.named_parameters()}
        # diffsynth's wrappers rename nothing a state dict would show for linear layers;
        # wrapped modules add ``.module.``: compare on the state dict names.
        strip = {n.replace(".module.", "."): n for n in kept}
        assert names == {k for k, n in strip.items() if n not in streamed}, budget
        size = streamed_bytes(shapes, budget, torch.bfloat16)
        assert size == 2 * sum(p.numel() for n, p in placed.named_parameters() if n in streamed)


def test_streamed_weights_go_to_the_host_allocator_with_the_same_values(tmp_path: Path) -> None:
    model = tiny_model(tiny_cfg(num_layers=2))
    write_dit_folder(tmp_path / "d", model, shards=3)
    with torch.device("meta"):
        shapes = PoseGenDiT(model.cfg)
    budget = sum(p.numel() for p in model.parameters()) // 2
    keep = resident_parameters(shapes, budget)
    slabs: list[torch.Tensor] = []

    def allocate(n: int) -> torch.Tensor:
        slabs.append(torch.empty(n, dtype=torch.uint8))
        return slabs[-1]

    arena = PinnedArena(streamed_bytes(shapes, budget, torch.float32), allocate=allocate)
    seconds: dict[str, float] = {}
    loaded = load_dit(tmp_path / "d", seconds=seconds, resident=keep.__contains__,
                      host=arena.take)
    plain = load_dit(tmp_path / "d")
    ranges = [(s.data_ptr(), s.data_ptr() + s.numel()) for s in slabs]
    on_host = set()
    for name, t in loaded.state_dict().items():
        assert torch.equal(t, plain.state_dict()[name]), name
        if any(a <= t.data_ptr() < b for a, b in ranges):
            on_host.add(name)
    assert on_host == set(loaded.state_dict()) - keep and on_host
    assert {"dit_load", "dit_merge", "dit_build"} <= set(seconds)


@pytest.mark.parametrize("split", ["base-first", "lora-first", "apart"])
def test_the_loader_merges_as_the_release_in_the_files_dtype_whatever_the_key_order(
        tmp_path: Path, split: str) -> None:
    """ENGINE-SPEC: W += alpha * (B @ A), alpha 1, in the checkpoint's dtype (bf16 here);
    the merged weight is then cast to the model's dtype. Halves and base may come in any
    order and in different shards."""
    model = tiny_model(tiny_cfg(num_layers=1))
    folder = tmp_path / "d"
    write_dit_folder(folder, model, shards=1)
    raw = {k: v.to(torch.bfloat16) for k, v in read_shards(folder).items()}
    for f in folder.glob("*.bin"):
        f.unlink()
    layer = "blocks.0.ffn.0"
    lora = {k: raw.pop(k) for k in list(raw)
            if k.startswith(f"{KEY_PREFIX}{layer}.") and not k.endswith(".bias")}
    w = lora[f"{KEY_PREFIX}{layer}.base_layer.weight"]
    a, b = lora[f"{KEY_PREFIX}{layer}{LORA_A}"], lora[f"{KEY_PREFIX}{layer}{LORA_B}"]
    halves = {k: v for k, v in lora.items() if "lora" in k}
    base = {f"{KEY_PREFIX}{layer}.base_layer.weight": w}
    if split == "apart":
        torch.save({**raw, **base}, folder / "pytorch_model-00001-of-00002.bin")
        torch.save(halves, folder / "pytorch_model-00002-of-00002.bin")
    else:
        ordered = {**base, **halves} if split == "base-first" else {**halves, **base}
        torch.save({**ordered, **raw}, folder / "pytorch_model.bin")
    release = w + 1.0 * torch.mm(b, a)  # bf16 operands, bf16 result
    got = load_dit(folder, dtype=torch.bfloat16).state_dict()[f"{layer}.weight"]
    assert got.dtype == torch.bfloat16 and torch.equal(got, release)
    as_f32 = load_dit(folder, dtype=torch.float32).state_dict()[f"{layer}.weight"]
    assert torch.equal(as_f32, release.float())  # merged in bf16, then cast


def test_a_lora_half_without_its_base_weight_names_the_layer(tmp_path: Path) -> None:
    model = tiny_model(tiny_cfg(num_layers=1))
    folder = tmp_path / "d"
    write_dit_folder(folder, model, shards=1)
    raw = read_shards(folder)
    for f in folder.glob("*.bin"):
        f.unlink()
    raw[f"{KEY_PREFIX}ghost{LORA_A}"] = torch.zeros(2, 3)
    raw[f"{KEY_PREFIX}ghost{LORA_B}"] = torch.zeros(3, 2)
    torch.save(raw, folder / "pytorch_model.bin")
    from engine.checkpoint.layout import CheckpointError

    with pytest.raises(CheckpointError, match="ghost"):
        load_dit(folder)
