"""Which worker, on which host and device, runs a chunk; GPU memory per node (several hosts)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from scenario import NOW
from snapshot_support import frozen_store, gpu_shown, until
from textual.pilot import Pilot
from textual.widgets import Static

from posegen_tui.app import PosegenApp
from posegen_tui.data.chunk import Chunk
from posegen_tui.data.loaders import SessionData, WorkerUse
from posegen_tui.gpu.fake import FakeGpuSource, NoGpuSource
from posegen_tui.gpu.source import GpuReading
from posegen_tui.gpu.state import GpuState
from posegen_tui.screens.gpu import GpuScreen
from posegen_tui.screens.projects import ProjectsScreen
from posegen_tui.widgets.chunk_details import details_text
from posegen_tui.widgets.gpu_panel import GpuPanel, nodes_text, place_workers, show_nodes
from sessions.paths import db_path
from sessions.store import Store

GIB = 2**30
HERE = "node-a"  # this host, in the multi-node tests (socket.gethostname is patched)


# -- chunk details: the worker's host and device ---------------------------------------

def session_data(workers: list[dict], chunk: Chunk) -> SessionData:
    return SessionData(session={"id": 1, "seed": 42, "budget": "4e9"}, project={"name": "p"},
                       state="running", chunks=[chunk], workers=workers, events=[],
                       log_lines=[], log_file="", eta_seconds=None, tiny_ckpt=False,
                       loaded_at=NOW)


def test_details_name_the_workers_host_and_device() -> None:
    running = Chunk(idx=2, role="base", start=0, end=81, status="running", step=3, steps=25,
                    worker_id=7)
    worker = {"id": 7, "host": "node-b", "device": "cuda:3", "pid": 99, "alive": True}
    text = details_text(session_data([worker], running), running).plain
    assert "worker 7 node-b cuda:3 · pid 99 (alive)" in text

    ended = {**worker, "alive": False, "end_reason": "lost"}
    done = Chunk(idx=2, role="base", start=0, end=81, status="done", worker_id=7)
    assert "worker 7 node-b cuda:3 · pid 99 (ended: lost)" in details_text(
        session_data([ended], done), done).plain


def test_details_say_what_a_running_chunk_is_doing() -> None:
    running = Chunk(idx=2, role="base", start=0, end=81, status="running", step=0, steps=25,
                    worker_id=7)
    data = session_data([], running)
    assert "now " not in details_text(data, running).plain  # no phase known yet
    data = dataclasses.replace(data, phases={2: ("loading", 95.0)})
    assert "now loading, for 01:35" in details_text(data, running).plain


# -- the store: latest sample per host and device --------------------------------------

def test_latest_gpu_samples_per_host_and_device(tmp_path: Path) -> None:
    store = Store(db_path(tmp_path))
    rows = [{"host": h, "device_index": d, "t": t, "used": int(u * GIB), "total": 80 * GIB}
            for h, d, t, u in (("node-b", 0, 100.0, 1), ("node-b", 0, 160.0, 2),
                               ("node-a", 1, 150.0, 3), ("node-a", 0, 120.0, 4),
                               ("node-a", 0, 90.0, 5), ("node-c", 0, 10.0, 6))]
    store.add_gpu_samples(rows)
    got = [(r["host"], r["device_index"], r["t"], r["used"] // GIB)
           for r in store.latest_gpu_samples()]
    assert got == [("node-a", 0, 120.0, 4), ("node-a", 1, 150.0, 3), ("node-b", 0, 160.0, 2),
                   ("node-c", 0, 10.0, 6)]
    assert [r["host"] for r in store.latest_gpu_samples(since=50)] == ["node-a"] * 2 + [
        "node-b"]
    store.close()


# -- the GPU panel's node list, without an app -----------------------------------------

def use(wid: int, host: str, device: str) -> WorkerUse:
    return WorkerUse(1, "dance", "4e9", {"id": wid, "host": host, "device": device,
                                          "torch_allocated": GIB, "torch_peak": 2 * GIB,
                                          "nvml_used": 3 * GIB})


def node(host: str, index: int, used: float, t: float = NOW - 2) -> dict:
    return {"host": host, "device_index": index, "t": t, "used": int(used * GIB),
            "total": 80 * GIB}


def state_with(nodes: list[dict], workers: list[WorkerUse], *, nvml: bool = True) -> GpuState:
    readings = [GpuReading(0, "H100", 31 * GIB, 80 * GIB, 90.0, 60.0)] if nvml else []
    return GpuState(readings=readings, unavailable="" if nvml else "no NVML",
                    workers=workers, nodes=nodes, host=HERE, read_at=NOW, loaded=True)


def test_one_host_keeps_the_panel_as_it_was() -> None:
    state = state_with([node(HERE, 0, 31), node(HERE, 1, 0.5)], [use(1, "gpu-box", "cuda:0")])
    assert not show_nodes(state)
    placed = place_workers(state)  # matched by device index alone, as before
    assert [u.worker["id"] for u in placed.cards[0]] == [1] and not placed.nodes


def test_nodes_list_memory_per_host_and_device() -> None:
    workers = [use(1, HERE, "cuda:0"), use(2, "node-b", "cuda:0"), use(3, "node-z", "cuda:0")]
    state = state_with([node(HERE, 0, 31.2), node("node-b", 0, 12.5), node("node-b", 1, 0.6),
                        node("node-c", 0, 40.0, t=NOW - 600)], workers)
    assert show_nodes(state)
    placed = place_workers(state)
    assert [u.worker["id"] for u in placed.cards[0]] == [1]  # this host: its device card
    assert [u.worker["id"] for u in placed.nodes[("node-b", 0)]] == [2]
    assert [u.worker["id"] for u in placed.rest] == [3]  # a host without samples: the note
    lines = nodes_text(state, placed).plain.splitlines()
    assert lines[0] == "nodes · latest memory sample per device"
    assert lines[1] == "node-a GPU 0 [####------] 31.2/80.0 GiB (39%)"
    assert lines[2] == "node-b GPU 0 [##--------] 12.5/80.0 GiB (16%)"
    assert lines[3].startswith("  worker 2 on cuda:0 · session 1 dance")
    assert lines[5] == "node-b GPU 1 [----------] 0.6/80.0 GiB (1%)"
    assert lines[6] == "node-c GPU 0 [#####-----] 40.0/80.0 GiB (50%) · 10m ago"


def test_a_ray_worker_is_found_by_the_worker_id_of_its_samples() -> None:
    """Under Ray an actor sees its GPU as cuda:0 whatever the node's index of it."""
    state = state_with([node("node-b", 0, 1.0), {**node("node-b", 3, 50.0), "worker_id": 9}],
                       [use(9, "node-b", "cuda:0")])
    placed = place_workers(state)
    assert list(placed.nodes) == [("node-b", 3)] and not placed.cards
    lines = nodes_text(state, placed).plain.splitlines()
    assert lines[2] == "node-b GPU 3 [######----] 50.0/80.0 GiB (62%)"
    assert lines[3].startswith("  worker 9 on cuda:0 · session 1")


def test_a_head_node_without_gpus_lists_the_workers_under_their_nodes() -> None:
    state = state_with([node("node-b", 0, 12.5)], [use(2, "node-b", "cuda:0")], nvml=False)
    assert show_nodes(state)  # one host, but not this one
    placed = place_workers(state)
    assert not placed.cards and not placed.rest and placed.nodes[("node-b", 0)]


# -- in the app, at 80x24 --------------------------------------------------------------

@pytest.fixture
def cluster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The scenario's store as seen from node-a, plus samples of node-b (fresh; a Ray
    actor of session 1 on its GPU 1, which the actor sees as cuda:0) and node-c (silent
    for ten minutes)."""
    monkeypatch.setattr(socket, "gethostname", lambda: HERE)
    for home in frozen_store(tmp_path, monkeypatch):
        store = Store(db_path(home))
        wid = store.register_worker(1, pid=5151, host="node-b", device="cuda:0")
        store.heartbeat(wid, torch_allocated=int(20.1 * GIB), torch_peak=int(24.0 * GIB),
                        nvml_used=int(28.4 * GIB), nvml_total=80 * GIB)
        store.add_gpu_samples([
            node(HERE, 0, 31.5), node(HERE, 1, 0.6), node("node-b", 0, 62.0),
            {**node("node-b", 1, 28.4), "worker_id": wid}, node("node-c", 0, 0.5, NOW - 600)])
        store.close()
        yield home


async def open_gpu_screen(pilot: Pilot) -> None:
    await until(pilot, lambda: isinstance(pilot.app.screen, ProjectsScreen)
                and pilot.app.screen.loaded and gpu_shown(pilot))
    await pilot.press("g")
    await until(pilot, lambda: isinstance(pilot.app.screen, GpuScreen) and gpu_shown(pilot))


def nodes_widget(app: PosegenApp) -> Static:
    return app.screen.query_one(GpuPanel).query_one(".gpu-nodes", Static)


def test_gpu_screen_lists_every_node_at_80x24(cluster_home: Path) -> None:
    async def main() -> None:
        app = PosegenApp(home=cluster_home, gpu=NoGpuSource(), auto_open=False, blink=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_gpu_screen(pilot)
            widget = nodes_widget(app)
            assert widget.display and widget.region.height > 0
            text = str(widget.render())
            for line in ("node-a GPU 0 [####------] 31.5/80.0 GiB (39%)",
                         "node-b GPU 0 [########--] 62.0/80.0 GiB (78%)",
                         "node-b GPU 1 [####------] 28.4/80.0 GiB (35%)",
                         "  worker 4 on cuda:0 · session 1 dance · -p 4e9",
                         "node-c GPU 0 [----------] 0.5/80.0 GiB (1%) · 10m ago"):
                assert line in text, text
            assert widget.region.right <= 80  # nothing cut at 80 columns

    asyncio.run(main())


def test_gpu_screen_with_one_host_has_no_node_list(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async def main(home: Path) -> None:
        app = PosegenApp(home=home, gpu=FakeGpuSource(), auto_open=False, blink=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_gpu_screen(pilot)
            assert not nodes_widget(app).display

    for home in frozen_store(tmp_path, monkeypatch):
        asyncio.run(main(home))


def test_gpu_80x24_two_nodes(snap_compare, cluster_home: Path) -> None:
    app = PosegenApp(home=cluster_home, gpu=FakeGpuSource(), auto_open=False, blink=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=open_gpu_screen)
