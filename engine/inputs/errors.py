"""Errors and warnings about user-supplied input files."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """One or more input files cannot be used; each problem names its file and the fix."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class InputWarning(UserWarning):
    """Something usable but probably unintended (e.g. a reference image cropped heavily)."""

    def __init__(self, path: str | Path | None, message: str) -> None:
        self.path = None if path is None else Path(path)
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message
