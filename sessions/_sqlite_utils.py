"""sqlite-utils, imported without pandas.

At import, sqlite-utils loads pandas (about a quarter of a second, most of what
`posegen status` spends starting) only to map pandas Timestamp columns, which the
store never writes. Hidden while sqlite-utils loads, pandas stays importable for
everything else; where it is already loaded, nothing changes.
"""

from __future__ import annotations

import sys

if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
    from sqlite_utils import Database
else:
    sys.modules["pandas"] = None  # type: ignore[assignment]  # `import pandas` fails
    try:
        from sqlite_utils import Database
    finally:
        del sys.modules["pandas"]

__all__ = ["Database"]
