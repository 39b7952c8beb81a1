"""The next-chunk policy: keep the loaded DiT, switch rather than idle, anchor/base first."""

from sessions.scheduling import dit_kind, is_switch, pick_chunk


def test_nothing_ready_gives_none():
    assert pick_chunk([], "base") is None


def test_no_model_loaded_follows_the_graph_order():
    ready = [(3, "cond"), (4, "base"), (0, "anchor"), (2, "base")]
    assert pick_chunk(ready, None) == (0, "anchor")
    assert pick_chunk(ready[:2] + ready[3:], None) == (2, "base")


def test_a_worker_keeps_its_loaded_dit_when_same_kind_work_is_ready():
    ready = [(2, "base"), (1, "cond"), (3, "cond")]
    assert pick_chunk(ready, "cond") == (1, "cond")
    assert pick_chunk(ready, "base") == (2, "base")


def test_a_worker_switches_rather_than_idles():
    assert pick_chunk([(5, "cond")], "base") == (5, "cond")
    assert pick_chunk([(6, "base")], "cond") == (6, "base")


def test_switch_detection():
    assert dit_kind("anchor") == dit_kind("base") == "base"
    assert is_switch("base", "cond") and is_switch("cond", "anchor")
    assert not is_switch(None, "cond") and not is_switch("base", "anchor")
