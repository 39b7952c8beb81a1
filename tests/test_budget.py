"""The `-p` DiT parameter budget: parsing and placement (spec section 7)."""

from __future__ import annotations

import builtins
import copy

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.budget import BudgetError, apply_budget, parse_budget
from engine.compat import import_diffsynth_module
from engine.models.dit import DiTConfig, PoseGenDiT, RMSNorm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("4*10**9", 4_000_000_000),
    ("4 * 10 ** 9", 4_000_000_000),
    ("1*10**9", 1_000_000_000),
    ("4e9", 4_000_000_000),
    ("4E9", 4_000_000_000),
    ("4G", 4_000_000_000),
    ("4g", 4_000_000_000),
    ("4000000000", 4_000_000_000),
    ("1.5e9", 1_500_000_000),
    ("0", 0),
    (" 2e9 ", 2_000_000_000),
    ("none", None),
    ("None", None),
])
def test_parse_budget_accepts(text: str, expected: int | None) -> None:
    got = parse_budget(text)
    assert got == expected
    assert got is None or type(got) is int


def test_parse_budget_passes_through_ints_and_none() -> None:
    assert parse_budget(None) is None
    assert parse_budget(123) == 123


@pytest.mark.parametrize("text", ["__import__('os')", "4*x", "-1", "", "   ", "4e9e9", "4GG",
                                  "os.system('true')", "1e9; 2", "4**10**9", "nan"])
def test_parse_budget_rejects(text: str) -> None:
    with pytest.raises(BudgetError) as e:
        parse_budget(text)
    msg = str(e.value)
    for form in ("4e9", "4G", "4*10**9", "none"):
        assert form in msg


@pytest.mark.parametrize("text", ["1e400", "1*10**400", "9" * 400, "2e999G",
                                  "1*10**" + "9" * 5000, "1e" + "9" * 5000])
def test_parse_budget_rejects_absurd_sizes(text: str) -> None:
    # Regression: these raised OverflowError / ValueError (or could hang computing 10**n).
    with pytest.raises(BudgetError):
        parse_budget(text)


def test_parse_budget_never_evaluates(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("user text was evaluated")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "compile", forbidden)
    assert parse_budget("4*10**9") == 4 * 10**9
    with pytest.raises(BudgetError):
        parse_budget("__import__('os').system('true')")


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=12),
    st.from_regex(r"\s*[0-9.]{1,6}(e[0-9]{1,4})?\s*[kmgbtKMGBT]?\s*", fullmatch=True),
    st.from_regex(r"[0-9]{1,4}\s*\*\s*10\s*\*\*\s*[0-9]{1,4}", fullmatch=True),
))
def test_parse_budget_total(text: str) -> None:
    # Whatever the user types: a non-negative count, None, or a BudgetError, never a crash.
    try:
        got = parse_budget(text)
    except BudgetError:
        return
    assert got is None or (type(got) is int and got >= 0)


# -- placement ---------------------------------------------------------------------------------


def tiny_model() -> PoseGenDiT:
    torch.manual_seed(0)
    cfg = DiTConfig(dim=64, in_dim=36, ffn_dim=128, out_dim=16, text_dim=32, freq_dim=64,
                    num_heads=2, num_layers=3, shift_ref_pos=True, use_hand_proj=True)
    return PoseGenDiT(cfg).eval().requires_grad_(False)


def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "latents": torch.randn(1, 16, 2, 8, 6, generator=g),
        "cond": torch.randn(1, 20, 2, 8, 6, generator=g),
        "hand": torch.randn(1, 16, 2, 8, 6, generator=g),
        "ref": torch.randn(1, 16, 1, 8, 6, generator=g),
        "text": torch.randn(1, 5, 32, generator=g),
        "clip": torch.randn(1, 257, 1280, generator=g),
    }


def run(model: PoseGenDiT, x: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        ctx = model.embed_context(x["text"], x["clip"])
        return model(x["latents"], x["cond"], x["hand"], x["ref"], ctx, torch.tensor([500.0]))


def layer_groups(model: nn.Module) -> tuple[int, list[tuple[str, int]]]:
    """(loose params, [(layer, params)] in module order) from the parameter names alone.

    Loose params are the modulation tables and learned positions (not inside a layer);
    every other parameter belongs to the layer named by its name minus the leaf.
    """
    loose = 0
    groups: dict[str, int] = {}
    for name, p in model.named_parameters():
        leaf = name.rpartition(".")[2]
        if leaf in ("modulation", "emb_pos"):
            loose += p.numel()
        else:
            layer = name.rpartition(".")[0]
            groups[layer] = groups.get(layer, 0) + p.numel()
    return loose, list(groups.items())


def expected_resident(model: nn.Module, budget: int | None) -> int:
    loose, groups = layer_groups(model)
    used = loose
    for _, n in groups:
        if budget is not None and used + n > budget:
            break
        used += n
    return used


@pytest.fixture(scope="module")
def reference() -> tuple[PoseGenDiT, torch.Tensor]:
    model = tiny_model()
    return model, run(model, inputs())


def budgets(model: nn.Module) -> list[int | None]:
    loose, groups = layer_groups(model)
    total = loose + sum(n for _, n in groups)
    return [None, 0, loose + sum(n for _, n in groups[: len(groups) // 2]) + 1,
            total // 3, total]


@pytest.mark.parametrize("which", range(5))
def test_apply_budget(reference, which: int) -> None:
    vram = import_diffsynth_module("diffsynth.core.vram.layers")
    original, want = reference
    budget = budgets(original)[which]
    model = copy.deepcopy(original)
    total = sum(p.numel() for p in model.parameters())
    resident_expected = expected_resident(model, budget)

    # A distinct (but equivalent) offload device tells streamed layers from resident ones.
    placement = apply_budget(model, budget, device="cpu", dtype=torch.float32,
                             offload_device="cpu:0")

    assert placement.resident_params + placement.streamed_params == total
    assert placement.resident_params == resident_expected
    if budget is None:
        assert placement.streamed_params == 0 and placement.streamed_layers == 0
    elif budget == 0:
        loose, _ = layer_groups(original)
        assert placement.resident_params == loose  # modulation tables always stay
    if budget is not None and placement.streamed_params:
        assert placement.resident_params <= max(budget, layer_groups(original)[0])
    assert sum(p.numel() for p in model.parameters()) == total

    # every Linear is an AutoWrappedLinear, every other layer sits in an AutoWrappedModule
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            assert isinstance(m, vram.AutoWrappedLinear), name
        elif isinstance(m, (nn.Conv3d, nn.LayerNorm, RMSNorm)):
            parent = model.get_submodule(name.rpartition(".")[0])
            assert isinstance(parent, vram.AutoWrappedModule), name

    # residents form a prefix in module order, and their params add up
    wrapped = [m for m in model.modules() if isinstance(m, vram.AutoTorchModule)]
    assert wrapped
    flags = [str(m.onload_device) == "cpu" for m in wrapped]
    first_streamed = flags.index(False) if False in flags else len(flags)
    assert all(flags[:first_streamed]) and not any(flags[first_streamed:])
    assert len(wrapped) == placement.resident_layers + placement.streamed_layers
    assert first_streamed == placement.resident_layers
    resident_layer_params = sum(p.numel() for m in wrapped[:first_streamed]
                                for p in m.parameters())
    assert placement.resident_params == resident_layer_params + layer_groups(original)[0]

    torch.testing.assert_close(run(model, inputs()), want, rtol=1e-5, atol=1e-6)


def test_budget_between_splits_the_model(reference) -> None:
    original, _ = reference
    model = copy.deepcopy(original)
    budget = budgets(original)[3]
    placement = apply_budget(model, budget, device="cpu", dtype=torch.float32)
    assert placement.resident_layers > 0 and placement.streamed_layers > 0
    assert placement.streamed_params > 0
    assert placement.resident_params <= budget


# -- automatic budget ------------------------------------------------------------------------


def test_parse_auto() -> None:
    from engine.budget import AUTO

    assert parse_budget("auto") == AUTO == parse_budget(" AUTO ")


def test_auto_budget_fits_the_free_memory() -> None:
    from engine.budget import activation_bytes, auto_budget, layer_sizes, margin_bytes

    model = tiny_model()
    loose, layers = layer_sizes(model, torch.bfloat16)
    total_params = sum(p.numel() for p in model.parameters())
    assert loose + sum(layers) == 2 * total_params
    n_tokens = 5000
    act = activation_bytes(model.cfg.dim, n_tokens)
    total = 80 << 30
    margin = margin_bytes(total)
    room_all = loose + sum(layers) + sorted(layers)[-1] * 0 + act + margin

    # room for everything: no limit
    budget, peak = auto_budget(model, torch.bfloat16, room_all, total, n_tokens)
    assert budget is None and peak == loose + sum(layers) + act

    # a little less room: the largest resident prefix whose peak still fits
    free = room_all - 1
    budget, peak = auto_budget(model, torch.bfloat16, free, total, n_tokens)
    assert budget is not None and peak <= free - margin
    placed = apply_budget(copy.deepcopy(model), budget, "cpu", torch.bfloat16)
    assert placed.streamed_layers >= 1
    # one more resident layer would not have fitted
    n = placed.resident_layers
    bigger = loose + sum(layers[:n + 1]) + sum(sorted(layers[n + 1:], reverse=True)[:2]) + act
    assert bigger > free - margin

    # no room at all: everything streams (the run then reports the OOM with advice)
    budget, _ = auto_budget(model, torch.bfloat16, margin, total, n_tokens)
    assert budget == loose // 2
