"""What a finished chunk's row records as its `-p` budget."""

from sessions.records import budget_used


def test_auto_is_recorded_as_what_it_resolved_to() -> None:
    # the budget screen fits peak VRAM against these numbers; "auto" alone says nothing
    assert budget_used({"budget": "auto", "resolved_budget": 12_023_778_816}) == 12_023_778_816
    assert budget_used({"budget": "auto", "resolved_budget": None}) is None  # all resident


def test_a_fixed_budget_is_recorded_as_set() -> None:
    assert budget_used({"budget": 4_000_000_000, "resolved_budget": 4_000_000_000}) == 4e9
    assert budget_used({"budget": None}) is None
    assert budget_used({}) is None
