"""Which ready chunk a worker takes next: pure policy, shared by the store and bench/.

The dependency graph (anchor -> base chunks -> cond chunks) says what *may* run;
this says what a worker holding a given DiT *should* run. Rules, in order:

1. Keep the loaded DiT: a worker holding the base DiT takes an anchor/base chunk
   and one holding the cond DiT takes a cond chunk, when one is ready. Loading the
   other DiT costs a full checkpoint read (tens of seconds at 14B), so switching
   while same-kind work is ready only adds time.
2. Otherwise switch rather than idle: ready work of the other kind would
   otherwise wait, and idling is never cheaper than a load.
3. Among equals: anchor first (everything waits for it), then base chunks (each
   unblocks two cond chunks), then cond chunks; lower index first.
"""

from __future__ import annotations

from collections.abc import Sequence

ROLE_RANK = {"anchor": 0, "base": 1, "cond": 2}


def dit_kind(role: str) -> str:
    """The DiT a chunk of ``role`` runs on: anchor and base share the base DiT."""
    return "cond" if role == "cond" else "base"


def pick_chunk(ready: Sequence[tuple[int, str]], loaded_kind: str | None = None
               ) -> tuple[int, str] | None:
    """The (idx, role) to run next among ``ready``, for a worker holding ``loaded_kind``.

    ``loaded_kind`` is "base", "cond" or None (nothing loaded yet: no preference).
    """
    if not ready:
        return None

    def key(item: tuple[int, str]) -> tuple[int, int, int]:
        idx, role = item
        switch = int(loaded_kind is not None and dit_kind(role) != loaded_kind)
        return switch, ROLE_RANK[role], idx

    return min(ready, key=key)


def is_switch(loaded_kind: str | None, role: str) -> bool:
    """True when running a ``role`` chunk means loading the other DiT."""
    return loaded_kind is not None and dit_kind(role) != loaded_kind
