"""posegen-tui: the Textual app that watches and steers PoseGen sessions.

It talks to the engine only through the session layer: the store for reading,
the command layer (`sessions.commands`, `sessions.control`) for every change, and
`sessions.tasks` for engine work in a child process; generation never runs
inside the app.
"""

__version__ = "0.1.0"
