"""`posegen-tui --serve`: the same app in a browser tab, through textual-serve.

textual-serve runs one app process per browser connection and relays its screen
over a websocket to xterm.js in the page. Here we choose what it runs (this
interpreter's `posegen-tui` with the user's own options), where it listens
(loopback unless the user says otherwise, twice), and what the user is told: the
`ssh -L` line that brings the port to their laptop, and the URL to open.

The app process is started by textual-serve, not by this module: the app still
never runs a subprocess itself (tests/test_architecture.py).
"""

from __future__ import annotations

import argparse
import errno
import getpass
import ipaddress
import shlex
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# The options of `posegen-tui` that are about serving, not about the app it serves.
SERVE_OPTIONS = ("serve", "host", "port", "allow_remote")


class ServeError(Exception):
    """A reason not to serve, worded for the user."""


@dataclass(frozen=True)
class Plan:
    host: str
    port: int
    command: str  # the shell command textual-serve runs for each browser connection
    url: str  # what the user opens (through the tunnel when loopback)
    ssh_line: str | None  # None when not on loopback: the URL is reached directly


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback one (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False  # an unknown name is no proof of loopback
    addrs = {str(info[4][0]) for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback
                               for a in addrs)


def check_host(host: str, allow_remote: bool) -> None:
    if allow_remote or is_loopback(host):
        return
    raise ServeError(
        f"--host {host} is not a loopback address: anyone who reaches it would get the app "
        "without a password (it can start, stop and delete sessions). Keep the default "
        f"({DEFAULT_HOST}) and use the printed `ssh -L` line, or add --allow-remote to serve "
        f"on {host} anyway.")


def app_argv(args: argparse.Namespace) -> list[str]:
    """The user's options for the app itself, as `posegen-tui` takes them (serving ones out)."""
    argv: list[str] = []
    if args.demo:
        argv.append("--demo")
    if args.session is not None:
        argv += ["--session", str(args.session)]
    if args.home is not None:
        # Absolute: the same home whatever folder the app process starts in.
        argv += ["--home", str(Path(args.home).expanduser().absolute())]
    if args.no_attach:
        argv.append("--no-attach")
    return argv


def app_command(args: argparse.Namespace) -> str:
    """This interpreter's `posegen-tui` with the user's options, as one shell line."""
    return shlex.join([sys.executable, "-m", "posegen_tui", *app_argv(args)])


def ssh_host() -> str:
    name = socket.getfqdn()
    if not name or name.startswith("localhost"):
        name = socket.gethostname()
    return name or "HOST"


def ssh_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name, no passwd entry
        return "USER"


def url_host(host: str) -> str:
    """How a browser names `host`: the machine's name for a wildcard, [v6] brackets."""
    if host in ("0.0.0.0", "::", ""):
        host = ssh_host()
    return f"[{host}]" if ":" in host else host


def plan(args: argparse.Namespace) -> Plan:
    host: str = args.host or DEFAULT_HOST
    port: int = args.port if args.port is not None else DEFAULT_PORT
    if not 1 <= port <= 65535:
        raise ServeError(f"--port {port} is not a TCP port (1-65535)")
    check_host(host, args.allow_remote)
    if is_loopback(host):
        # The page asks for its script and websocket at the URL it was served for, so the
        # laptop's end of the tunnel must be the same port.
        url = f"http://{url_host(host)}:{port}"
        line = f"ssh -L {port}:{url_host(host)}:{port} {ssh_user()}@{ssh_host()}"
        return Plan(host, port, app_command(args), url, line)
    return Plan(host, port, app_command(args), f"http://{url_host(host)}:{port}", None)


def port_in_use(p: Plan) -> ServeError:
    return ServeError(
        f"port {p.port} on {p.host} is in use (another `posegen-tui --serve`?). Stop that "
        f"one, or pick a free port: --port {p.port + 1 if p.port < 65535 else 8000} (and the "
        "same port in the ssh -L line).")


def check_port_free(p: Plan) -> None:
    """Fail early, with the port named, when another process listens there."""
    try:
        infos = socket.getaddrinfo(p.host, p.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except OSError as e:
        raise ServeError(f"cannot resolve --host {p.host}: {e}") from e
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
            try:
                s.bind(addr)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise port_in_use(p) from e
                raise ServeError(f"cannot listen on {p.host}:{p.port}: {e.strerror}") from e


def banner(p: Plan) -> list[str]:
    if p.ssh_line is not None:
        return [f"posegen-tui: serving the app on {p.host}:{p.port} (this machine only).",
                "On your laptop, forward the port (the same number on both ends):",
                f"    {p.ssh_line}",
                f"then open {p.url}",
                "Each tab runs its own app; closing it leaves the engine running. "
                "Ctrl+C stops serving."]
    return [f"posegen-tui: serving the app on {p.host}:{p.port}.",
            f"Open {p.url}",
            "Each tab runs its own app; closing it leaves the engine running. "
            "Ctrl+C stops serving."]


def remote_warning(p: Plan) -> str:
    return (f"posegen-tui: WARNING: {p.host}:{p.port} is reachable from other machines and "
            "there is NO authentication: anyone who can connect gets the app, as you, and "
            "can start, stop and delete sessions. Prefer the default host and an ssh tunnel.")


def serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl+C; 2 (with the reason on stderr) when it cannot start."""
    try:
        p = plan(args)
        check_port_free(p)
    except ServeError as e:
        print(f"posegen-tui: error: {e}", file=sys.stderr)
        return 2
    from textual_serve.server import Server

    class QuietServer(Server):
        async def on_startup(self, app: object) -> None:
            """Our banner instead of textual-serve's logo and raw command line."""

    if p.ssh_line is None:
        print(remote_warning(p), file=sys.stderr, flush=True)
    print("\n".join(banner(p)), flush=True)
    server = QuietServer(p.command, host=p.host, port=p.port, title="posegen-tui",
                         public_url=p.url)
    try:
        server.serve()
    except OSError as e:  # taken between the check and the bind
        err = port_in_use(p) if e.errno == errno.EADDRINUSE else ServeError(str(e))
        print(f"posegen-tui: error: {err}", file=sys.stderr)
        return 2
    return 0
