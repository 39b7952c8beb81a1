"""`posegen` read commands answer without loading the models' libraries.

Every `posegen` run used to import torch (seconds; more on a busy GPU server) even for
`status`. The commands that only read or change the session store must not import
torch, cv2, diffsynth or transformers; `bench/cli_startup.py` times them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sessions_helpers import init_project, make_session, session_env

HEAVY = ("torch", "cv2", "diffsynth", "transformers")
# Runs one `posegen` command in-process, then reports which heavy modules it loaded.
PROBE = ("import sys\nfrom sessions.cli import main\n"
         "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
         f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules), code)\n")
ROOT = Path(__file__).resolve().parents[1]


def loaded_by(home: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True,
                          text=True, env=session_env(home), cwd=ROOT, timeout=120)
    line = [x for x in proc.stdout.splitlines() if x.startswith("LOADED")]
    assert line, proc.stdout + proc.stderr
    return line[-1]


@pytest.mark.slow  # ten `posegen` processes
def test_read_and_control_commands_do_not_load_torch(tmp_path: Path, tiny_ckpt: Path,
                                                     sample_dir: Path) -> None:
    home = tmp_path / "home"
    init_project(home, sample_dir)
    sid = str(make_session(home, tiny_ckpt))
    for args in (["--help"], ["session", "new", "--help"], ["status"], ["status", sid],
                 ["status", sid, "--json"], ["logs", sid], ["wait", sid, "--timeout", "0"],
                 ["pause", sid], ["resume", sid, "--help"], ["stop", sid]):
        assert loaded_by(home, *args).startswith("LOADED []"), args


def test_the_probe_sees_torch_when_a_command_loads_it(tmp_path: Path) -> None:
    # The check above could pass by never looking: `generate --help` builds the same
    # parser, and a real generate imports torch before it fails on a missing file.
    line = loaded_by(tmp_path, "generate", "--image", "x.png", "--pose", "p.mp4", "--hand",
                     "h.mp4", "--prompt", "a man", "--out", str(tmp_path / "o"))
    assert "'torch'" in line, line


def test_session_changes_need_no_torch(tmp_path: Path, tiny_ckpt: Path,
                                       sample_dir: Path) -> None:
    """Issue #14: `session new` checks every setting (checkpoint, plan) torch-free, in
    well under the seconds torch takes to import; retry and cache as well."""
    home = tmp_path / "home"
    init_project(home, sample_dir)
    sid = str(make_session(home, tiny_ckpt))
    for args in (["session", "new", "demo", "--ckpt", str(tiny_ckpt), "--height", "64",
                  "--width", "32", "--frames", "17", "--head", "5", "--tail", "4",
                  "-s", "0", "1", "-b", "2", "4", "--steps", "2"],
                 ["cache", sid], ["cache", sid, "--clear"]):
        line = loaded_by(home, *args)
        assert "'torch'" not in line and line.endswith(" 0"), (args, line)


def test_version_and_defaults_in_help(tmp_path: Path) -> None:
    version = subprocess.run([sys.executable, "-m", "sessions.cli", "--version"],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("posegen "), version
    text = subprocess.run([sys.executable, "-m", "sessions.cli", "session", "new", "--help"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120).stdout
    flat = " ".join(text[text.index("options:"):].split())  # past the usage lines
    for option, default in (("--frames", "81"), ("--steps", "25"), ("--device", "cpu"),
                            ("--height", "1280"), ("--budget", "none")):
        after = flat[flat.index(f"{option} "):]
        assert f"(default: {default})" in after[:400], (option, after[:400])
