"""sqlite-utils, imported without pandas, and typed access to its tables.

At import, sqlite-utils loads pandas (about a quarter of a second, most of what
`posegen status` spends starting) only to map pandas Timestamp columns, which the
store never writes. Hidden while sqlite-utils loads, pandas stays importable for
everything else; where it is already loaded, nothing changes.

``db[name]`` is typed ``Table | View``; the store has no views, so :func:`table`
returns the ``Table`` that writes need (and says so if a view ever takes the name).
"""

from __future__ import annotations

import sys

if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
    from sqlite_utils import Database
    from sqlite_utils.db import Table
else:
    sys.modules["pandas"] = None  # type: ignore[assignment]  # `import pandas` fails
    try:
        from sqlite_utils import Database
        from sqlite_utils.db import Table
    finally:
        del sys.modules["pandas"]

__all__ = ["Database", "Table", "last_rowid", "table"]


def table(db: Database, name: str) -> Table:
    """The table ``name`` of ``db`` (``db[name]``); TypeError if ``name`` is a view."""
    t = db[name]
    if not isinstance(t, Table):
        raise TypeError(f"{name!r} is a view, not a table")
    return t


def last_rowid(t: Table) -> int:
    """The rowid of the row ``t`` last inserted; RuntimeError if it inserted none."""
    if t.last_rowid is None:
        raise RuntimeError(f"no row was inserted into {t.name!r}")
    return int(t.last_rowid)
