"""Folders named by a command-line option or, failing that, an environment variable."""

from __future__ import annotations

import os
from pathlib import Path


def folder_from(path: str | os.PathLike[str] | None, option: str, env: str, *,
                error: type[Exception], none_given: str, not_a_folder: str
                ) -> tuple[Path, str]:
    """(folder, where it came from) for ``option`` if given, else ``$env``.

    ``none_given`` is the error when neither is set; ``not_a_folder`` the one when
    the path is not a folder (formatted with ``folder`` and ``source``).
    """
    chosen = os.fspath(path) if path else os.environ.get(env, "")
    if not chosen:
        raise error(none_given)
    folder = Path(chosen).expanduser()
    source = option if path else f"${env}"
    if not folder.is_dir():
        raise error(not_a_folder.format(folder=folder, source=source))
    return folder, source
