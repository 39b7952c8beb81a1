"""Opening the store: one `Store` per call, because a connection may not cross threads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sessions.paths import db_path
from sessions.store import Store


@contextmanager
def opened(home: Path) -> Iterator[Store]:
    store = Store(db_path(home))
    try:
        yield store
    finally:
        store.close()
