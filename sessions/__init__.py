"""SQLite session store shared by workers (one process per GPU) and viewers (app, CLI).

This package is the only place in the project that holds SQL. It must not import
textual or posegen_tui, so a worker can use it without the UI installed.
"""
