"""posegen-tui: the Textual app that watches and steers PoseGen sessions.

It talks to the engine only through the session store (`sessions.store`) and
process control (`sessions.control`, `posegen` subprocesses); generation never
runs inside the app.
"""

__version__ = "0.1.0"
