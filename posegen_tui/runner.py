"""Background calls: store reads, actions and GPU readings on thread workers.

Every call runs as a Textual thread worker of the app, in a named group, so the
app's one `on_worker_state_changed` handler sees every failure. A result comes
back as a `ResultReady` message to the node that asked, which applies it on the
UI thread; a node that is gone or closing by then drops it. A key has at most
one call in flight: a poll that finds its previous read unfinished skips a beat
instead of piling reads up behind a busy database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from textual.app import App
from textual.message import Message
from textual.message_pump import MessagePump
from textual.worker import Worker

READS = "db-reads"
ACTIONS = "db-actions"
GPU = "gpu-readings"
GROUPS = (READS, ACTIONS, GPU)

T = TypeVar("T")
ErrorHandler = Callable[[BaseException], None]


class ResultReady(Message, bubble=False):
    def __init__(self, result: Any, apply: Callable[[Any], None]) -> None:
        super().__init__()
        self.result = result
        self.apply = apply


class ReceivesResults(MessagePump):
    """Mixin for nodes that ask the runner for work."""

    def on_result_ready(self, message: ResultReady) -> None:
        # A node shutting down (the app closing its screens on quit) may still drain its
        # queue: a result that lands then has nothing left to show it.
        if self.is_running:
            message.apply(message.result)


class Runner:
    def __init__(self, app: App[Any]) -> None:
        self.app = app
        self.in_flight: set[str] = set()
        self._on_error: dict[Worker[Any], ErrorHandler] = {}

    def submit(self, target: MessagePump, key: str, call: Callable[[], T],
               apply: Callable[[T], None], *, group: str = READS,
               on_error: ErrorHandler | None = None) -> bool:
        """Run ``call`` on a thread; ``apply(result)`` runs on ``target``'s UI loop.

        Returns False (and does nothing) while a call with this key is in flight.
        """
        if key in self.in_flight:
            return False
        self.in_flight.add(key)

        def work() -> None:
            target.post_message(ResultReady(call(), apply))

        worker = self.app.run_worker(work, name=key, group=group, thread=True,
                                     exit_on_error=False)
        if on_error is not None:
            self._on_error[worker] = on_error
        return True

    def finished(self, worker: Worker[Any]) -> ErrorHandler | None:
        """Bookkeeping when a worker ends; returns its own error handler, if any."""
        self.in_flight.discard(worker.name)
        return self._on_error.pop(worker, None)
