"""Engine work for the app runs in a child process that answers in JSON, not printed words."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessions.tasks import TaskError, run_task


def test_an_unknown_task_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="unknown task.*merge"):
        run_task("no-such-task", {}, home=tmp_path)


def test_a_user_error_comes_back_as_its_one_line_message(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.delenv("QWEN25_VL_7B_INSTRUCT_PATH", raising=False)
    with pytest.raises(TaskError) as err:
        run_task("describe", {"image": str(tmp_path / "ref.png")}, home=tmp_path)
    assert "QWEN25_VL_7B_INSTRUCT_PATH" in str(err.value)
    assert "Traceback" not in str(err.value)


def test_progress_and_the_typed_result_of_a_task(tmp_path: Path) -> None:
    said: list[str] = []
    paths = run_task("sample_inputs", {"dir": str(tmp_path / "in"), "frames": 9,
                                       "height": 64, "width": 32},
                     home=tmp_path, on_progress=said.append)
    assert said == [f"writing synthetic inputs (9 frames) to {tmp_path / 'in'}"]
    assert Path(paths["pose"]).is_file() and Path(paths["reference"]).is_file()
