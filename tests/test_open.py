"""`posegen open SESSION [--chunk K]`: the path, the desktop viewer, the SSH copy line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sessions.paths import db_path, workspace_dir
from sessions.store import Store
from sessions.viewer import opener, scp_line

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """Session 1 with 3 chunks: chunk 0 with its video on disk, 2 pending (it reads 1)."""
    home = tmp_path / "home"
    store = Store(db_path(home))
    pid = store.create_project("dance", image="/r.png", pose="/p.mp4", hand="/h.mp4",
                               prompt="a woman dances", framing="half-body")
    sid = store.create_session(pid, settings={}, seed=42, steps=25, cfg=5.0, share_steps="0 2",
                               share_blocks="34 40", anchor=0, budget="none", ckpt="/ckpt",
                               device="cpu", gpus="", workspace="")
    ws = workspace_dir(sid, home)
    store.set_workspace(sid, str(ws))
    store.init_chunks(sid, [{"idx": i, "role": "base", "start_frame": 60 * i,
                             "end_frame": 60 * i + 81, "deps": [i - 1] if i else [],
                             "steps": 25}
                            for i in range(3)])
    store.close()
    (ws / "chunks" / "000").mkdir(parents=True)
    (ws / "chunks" / "000" / "chunk.mp4").write_bytes(b"mp4")
    return home


def posegen_open(home: Path, *args: str, display: bool, tmp_path: Path
                 ) -> subprocess.CompletedProcess[str]:
    """`posegen open` with a fake xdg-open first on PATH that writes its argument down."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "xdg-open"
    fake.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {tmp_path / "opened.tmp"}\n'
                    f'mv {tmp_path / "opened.tmp"} {tmp_path / "opened"}\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SSH_CONNECTION")}
    env.update(POSEGEN_HOME=str(home), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    if display:
        env["DISPLAY"] = ":0"
    else:
        env["SSH_CONNECTION"] = "10.0.0.9 50000 10.0.0.5 22"
    return subprocess.run([sys.executable, "-m", "sessions.cli", "open", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


@pytest.fixture
def merged(home: Path) -> Path:
    video = workspace_dir(1, home) / "video.mp4"
    video.write_bytes(b"mp4")
    return video.resolve()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="xdg-open is Linux's viewer")
def test_open_with_a_display_runs_the_viewer(home: Path, merged: Path, tmp_path: Path) -> None:
    proc = posegen_open(home, "1", display=True, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(merged)
    assert "opened with xdg-open" in proc.stderr
    opened = tmp_path / "opened"
    end = time.monotonic() + 60  # the viewer runs detached: wait for what it wrote
    while not opened.exists():
        assert time.monotonic() < end, "xdg-open never ran"
        time.sleep(0.05)
    assert opened.read_text() == str(merged)


def test_open_without_a_display_only_prints(home: Path, merged: Path, tmp_path: Path) -> None:
    proc = posegen_open(home, "1", display=False, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(merged)
    assert f"@10.0.0.5:{merged}" in proc.stderr and "scp " in proc.stderr
    assert not (tmp_path / "opened").exists() and not (tmp_path / "opened.tmp").exists()


def test_open_a_chunk(home: Path, tmp_path: Path) -> None:
    proc = posegen_open(home, "1", "--chunk", "0", display=False, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str((workspace_dir(1, home) / "chunks/000/chunk.mp4")
                                      .resolve())


@pytest.mark.parametrize(("args", "words"), [
    (["1"], ["no merged video yet", "posegen open 1 --chunk K"]),
    (["1", "--chunk", "2"], ["chunk 2 has no video yet: it is pending", "posegen open 1`"]),
    (["1", "--chunk", "7"], ["session 1 has no chunk 7", "chunks 0-2"]),
    (["9"], ["unknown session 9"]),
])
def test_a_missing_video_is_one_line_that_says_what_to_do(
        home: Path, tmp_path: Path, args: list[str], words: list[str]) -> None:
    proc = posegen_open(home, *args, display=True, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("posegen: error: "), proc.stderr
    for w in words:
        assert w in lines[0]
    assert not (tmp_path / "opened").exists()


def test_which_viewer() -> None:
    assert opener({"DISPLAY": ":0"}, "linux") == "xdg-open"
    assert opener({"WAYLAND_DISPLAY": "wayland-0"}, "linux") == "xdg-open"
    assert opener({}, "linux") is None
    assert opener({}, "darwin") == "open"
    assert scp_line(Path("/data/a b.mp4"), {"SSH_CONNECTION": "1 2 fe80::1 22"}).endswith(
        "@[fe80::1]:/data/a b.mp4' .")
