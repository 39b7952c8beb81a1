"""Errors a user can fix, in one torch-free module: the CLI names them without loading
the models (every `posegen` command starts in a fraction of a second).

Each is raised with a message that names the value or file and the fix.
"""

from __future__ import annotations


class BudgetError(ValueError):
    """A `-p` value that is not a parameter count, `auto` or `none`."""


class JobError(RuntimeError):
    """A setting or workspace that does not fit this run."""


class CacheMismatchError(RuntimeError):
    """The cache on disk was made with other settings than this run's."""


class MediaError(ValueError):
    """A media file that cannot be read or written; the message names the file and the fix."""
