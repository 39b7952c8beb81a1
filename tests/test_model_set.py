"""ModelSet: which DiTs a worker holds, and when a switch between them costs a load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import engine.model_set as model_set
from engine.budget import AUTO, activation_bytes, fits_whole, margin_bytes
from engine.checkpoint.layout import CheckpointLayout
from engine.model_set import ModelSet
from engine.models.dit import DiTConfig, PoseGenDiT

GiB = 2**30
TOKENS_720P = 21 * 80 * 45 + 80 * 45  # latent frames x patches, plus one reference frame


def test_the_release_dit_fits_beside_another_on_80_gb_not_on_48_gb() -> None:
    with torch.device("meta"):
        dit = PoseGenDiT(DiTConfig())  # Wan2.1-I2V-14B's sizes
    weights = sum(p.numel() for p in dit.parameters()) * 2  # bf16
    act = activation_bytes(dit.cfg.dim, TOKENS_720P)
    # Everything resident needs the weights, one forward's activations and the margin.
    for total in (140 * GiB, 80 * GiB):
        need = weights + act + margin_bytes(total)
        assert fits_whole(dit, torch.bfloat16, need, total, TOKENS_720P)
        assert not fits_whole(dit, torch.bfloat16, need - 1, total, TOKENS_720P)
    # With one 14B DiT resident (30.5 GiB), the other fits whole beside it on an H200 and
    # on an 80 GB card (30.5 + 11.5 GiB of activations + 4 GiB margin <= 48.5 GiB free),
    # not on a 48 GB card.
    assert fits_whole(dit, torch.bfloat16, 139 * GiB - weights, 140 * GiB, TOKENS_720P)
    assert fits_whole(dit, torch.bfloat16, 79 * GiB - weights, 80 * GiB, TOKENS_720P)
    assert not fits_whole(dit, torch.bfloat16, 47 * GiB - weights, 48 * GiB, TOKENS_720P)


@pytest.fixture
def counted_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    loads: list[str] = []
    real = model_set.load_dit

    def load(folder, **kwargs):
        loads.append(Path(folder).name)
        return real(folder, **kwargs)

    monkeypatch.setattr(model_set, "load_dit", load)
    return loads


@pytest.mark.parametrize("both_fit", [True, False])
def test_switching_keeps_both_dits_only_where_they_fit(
        tiny_ckpt: Path, counted_loads: list[str], monkeypatch: pytest.MonkeyPatch,
        both_fit: bool) -> None:
    models = ModelSet(CheckpointLayout(tiny_ckpt), "cpu", torch.float32, AUTO)
    monkeypatch.setattr(models, "_fits_beside", lambda kind: both_fit)
    base = models.dit("base")
    assert models.loaded_dit == "base"
    cond = models.dit("cond")
    assert cond is not base
    again = models.dit("base")
    models.dit("cond")
    if both_fit:
        assert again is base and counted_loads == ["720p-81f-base", "720p-81f-cond"]
        assert models.dit_switches == 0
        assert models.loaded_dit is None  # no kind costs a load: no scheduling preference
    else:
        assert again is not base and counted_loads == ["720p-81f-base", "720p-81f-cond"] * 2
        assert models.dit_switches == 3
        assert models.loaded_dit == "cond"
    models.release()
    assert models.loaded_dit is None


def test_cpu_and_explicit_budgets_never_hold_two(tiny_ckpt: Path) -> None:
    # The check itself, without a GPU: CPU workers and an explicit -p (a budget per
    # DiT, which two resident DiTs would exceed) always drop the other DiT.
    for budget in (None, AUTO, 10**9):
        models = ModelSet(CheckpointLayout(tiny_ckpt), "cpu", torch.float32, budget)
        assert not models._fits_beside("cond")
