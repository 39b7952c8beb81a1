"""Our commands in Textual's command palette (ctrl+p): open a session, act on the one
on screen, create projects and sessions, jump to the GPU and help screens."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from pathlib import Path

from textual.command import DiscoveryHit, Hit, Hits, Provider

from posegen_tui.app_protocol import app_api
from posegen_tui.data.store_access import opened
from posegen_tui.safe_text import highlight, plain, printable

Command = tuple[str, Callable[[], object], str]  # (text, call, help)


def _rows(home: Path) -> tuple[list[dict], list[dict]]:
    with opened(home) as store:
        return store.list_projects(), store.list_sessions()


class PosegenCommands(Provider):
    async def startup(self) -> None:
        app = app_api(self.app)
        try:  # a database read: off the UI thread
            self.projects, self.sessions = await asyncio.to_thread(_rows, app.home)
        except Exception:  # the palette still offers the commands that need no rows
            self.projects, self.sessions = [], []

    def commands(self) -> list[Command]:
        from posegen_tui.screens.session import SESSION_ACTIONS, SessionScreen

        app = app_api(self.app)
        cmds: list[Command] = []
        screen = self.screen
        if isinstance(screen, SessionScreen):
            for a in SESSION_ACTIONS:
                if a.verb:
                    cmds.append((f"{a.verb} session {screen.session_id}",
                                 getattr(screen, f"action_{a.action}"), f"{a.help} ({a.key})"))
        for s in reversed(self.sessions):
            cmds.append((f"Open session {s['id']}: {printable(s['project_name'])} ({s['state']})",
                         partial(app.open_session, s["id"]),
                         f"{s['chunks_done']}/{s['chunks_total']} chunks done"))
        for p in self.projects:
            cmds.append((f"New session of {printable(p['name'])}", partial(app.new_session, p),
                         "settings form with the spec's defaults"))
        cmds += [("New project", app.new_project,
                  "image, pose/hand clips or Sapiens outputs, prompt"),
                 ("GPU panel", app.action_gpu, "memory, utilisation, temperature (g)"),
                 ("Projects and sessions", app.show_projects, "the start screen"),
                 ("Help: keys", app.action_help, "every key of this screen (?)")]
        return cmds

    async def discover(self) -> Hits:
        for text, call, help_text in self.commands():
            yield DiscoveryHit(plain(text), call, text=text, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, call, help_text in self.commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, highlight(matcher, text), call, text=text, help=help_text)
