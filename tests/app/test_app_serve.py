"""`posegen-tui --serve`: the app in a browser tab (textual-serve), loopback unless told.

The last test loads the served page in a real headless chromium, driven through the
DevTools protocol, reads the text xterm.js shows, and saves the README's screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posegen_tui import serve
from posegen_tui.cli import build_parser, main
from sessions.paths import DB_NAME

ROOT = Path(__file__).resolve().parents[2]
# The README's screenshot is rewritten only when asked (POSEGEN_UPDATE_SCREENSHOTS=1), so a
# test run never leaves the checkout modified (another chromium draws other bytes).
DOCS_SCREENSHOT = ROOT / "docs" / "screenshots" / "browser-projects.png"


def parse(*argv: str) -> Any:
    return build_parser().parse_args(["--serve", *argv])


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve.getpass, "getuser", lambda: "alice")
    monkeypatch.setattr(serve.socket, "getfqdn", lambda: "gpu01.example.org")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- where it listens, what it prints ----------------------------------------------------

def test_the_default_is_loopback_port_8000_with_the_exact_ssh_line(machine: None) -> None:
    p = serve.plan(parse())
    assert (p.host, p.port) == ("127.0.0.1", 8000)
    assert p.ssh_line == "ssh -L 8000:127.0.0.1:8000 alice@gpu01.example.org"
    assert p.url == "http://127.0.0.1:8000"
    p = serve.plan(parse("--port", "8123"))
    assert p.ssh_line == "ssh -L 8123:127.0.0.1:8123 alice@gpu01.example.org"
    assert p.url == "http://127.0.0.1:8123"
    assert f"    {p.ssh_line}" in serve.banner(p) and f"then open {p.url}" in serve.banner(p)


def test_the_host_falls_back_to_the_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve.socket, "getfqdn", lambda: "localhost.localdomain")
    monkeypatch.setattr(serve.socket, "gethostname", lambda: "gpu01")
    monkeypatch.setattr(serve.getpass, "getuser", lambda: "bob")
    assert serve.plan(parse()).ssh_line == "ssh -L 8000:127.0.0.1:8000 bob@gpu01"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_need_no_flag(host: str) -> None:
    assert serve.is_loopback(host)
    serve.check_host(host, allow_remote=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.7"])
def test_a_non_loopback_host_is_refused_without_allow_remote(
        host: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--serve", "--host", host, "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert f"--host {host} is not a loopback address" in err
    assert "without a password" in err and "add --allow-remote" in err


def test_allow_remote_serves_there_with_a_warning(machine: None) -> None:
    p = serve.plan(parse("--host", "0.0.0.0", "--allow-remote", "--port", "8080"))
    assert p.ssh_line is None and p.url == "http://gpu01.example.org:8080"
    warning = serve.remote_warning(p)
    assert "0.0.0.0:8080" in warning and "NO authentication" in warning


def test_serving_options_need_serve(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--port", "8000", "--allow-remote"])
    assert e.value.code == 2
    assert "--port, --allow-remote need --serve" in capsys.readouterr().err


def test_a_port_in_use_is_named_with_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use" in err
    assert f"--port {port + 1}" in err


# -- what each browser connection runs ---------------------------------------------------

def test_the_served_command_is_this_interpreters_app_with_the_users_options(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = parse("--demo", "--session", "3", "--home", "rel/home", "--no-attach",
                 "--port", "8001", "--host", "localhost")
    argv = shlex.split(serve.app_command(args))
    assert argv == [sys.executable, "-m", "posegen_tui", "--demo", "--session", "3",
                    "--home", str(tmp_path / "rel" / "home"), "--no-attach"]
    assert build_parser().parse_args(argv[3:]).serve is False  # and it parses as the app
    assert shlex.split(serve.app_command(parse()))[3:] == []


def test_every_app_option_is_carried() -> None:
    """A new option of `posegen-tui` must reach the served app too (or be a serving one)."""
    parser = build_parser()
    every = {a.dest: a for a in parser._actions if a.dest != "help"}
    app_options = set(every) - set(serve.SERVE_OPTIONS)
    values = {"demo": True, "session": 7, "home": Path("/h"), "no_attach": True}
    assert app_options == set(values)
    args = parser.parse_args([])
    for dest, value in values.items():
        setattr(args, dest, value)
    carried = serve.app_argv(args)
    for dest in app_options:
        assert every[dest].option_strings[0] in carried, dest


# -- in a real browser -------------------------------------------------------------------

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser")
                 if shutil.which(n)), None)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
# textual-serve's page keeps its xterm.js Terminal out of reach (`this.terminal = new
# Terminal(...)` in a closure); catch it as it is assigned, before the page's script runs.
CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  get() { return undefined; },
  set(value) {
    Object.defineProperty(this, "terminal",
                          {value, writable: true, configurable: true, enumerable: true});
    if (value && typeof value === "object" && "buffer" in value && !window.__xterm)
      window.__xterm = value;
  },
});
"""
# The rows xterm.js shows (its buffer's viewport; null before we catch the terminal), and
# whether the page has a terminal yet (xterm.js adds .xterm in open(), after the assignment
# we catch). One evaluation, so the two agree.
SCREEN_TEXT = """(() => {
  const t = window.__xterm, opened = !!document.querySelector(".xterm");
  if (!t) return {opened, text: null};
  const b = t.buffer.active, rows = [];
  for (let i = 0; i < t.rows; i++) {
    const line = b.getLine(b.viewportY + i);
    rows.push(line ? line.translateToString(true) : "");
  }
  return {opened, text: rows.join("\\n")};
})()"""
# Shown for real: the page's fade-in over and two frames painted since.
PAINTED = """new Promise(done => {
  const term = document.querySelector(".textual-terminal");
  if (!term || getComputedStyle(term).opacity !== "1") return done(false);
  requestAnimationFrame(() => requestAnimationFrame(() => done(true)));
})"""


class DevTools:
    """Just enough of the Chrome DevTools protocol: one page, commands in turn."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.last_id = ws, 0

    async def __call__(self, method: str, **params: Any) -> dict[str, Any]:
        self.last_id += 1
        await self.ws.send_json({"id": self.last_id, "method": method, "params": params})
        while True:  # events arrive in between; skip them
            msg = await self.ws.receive_json()
            if msg.get("id") == self.last_id:
                assert "error" not in msg, (method, msg["error"])
                return dict(msg["result"])

    async def value(self, expression: str) -> Any:
        r = await self("Runtime.evaluate", expression=expression, returnByValue=True,
                       awaitPromise=True)
        assert "exceptionDetails" not in r, r["exceptionDetails"]
        return r["result"].get("value")


async def until_true(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def show_in_chromium(url: str, profile: Path, log: Path, shot: Path) -> str:
    """Open `url`, wait for the projects screen, screenshot it; returns the screen text."""
    import aiohttp

    with log.open("wb") as err:
        browser = subprocess.Popen([CHROMIUM or "chromium", *CHROMIUM_FLAGS,
                                    f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                    "about:blank"], stdout=subprocess.DEVNULL, stderr=err)
    try:
        active = profile / "DevToolsActivePort"  # chromium writes its port here

        async def devtools_port() -> int:
            assert browser.poll() is None, log.read_text()[-3000:]
            text = active.read_text() if active.exists() else ""
            return int(text.split()[0]) if text.strip() else 0

        port = await until_true(devtools_port, 60, "chromium's DevTools port")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                page = next(t for t in await r.json() if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                cdp = DevTools(ws)
                await cdp("Page.enable")
                await cdp("Emulation.setDeviceMetricsOverride", width=1280, height=720,
                          deviceScaleFactor=1, mobile=False)
                await cdp("Page.addScriptToEvaluateOnNewDocument", source=CATCH_TERMINAL)
                await cdp("Page.navigate", url=url)

                seen: list[str | None] = [None]  # what the terminal showed last

                async def projects_screen() -> str | None:
                    screen = await cdp.value(SCREEN_TEXT)
                    seen[0] = text = screen["text"]
                    if text is None and screen["opened"]:
                        pytest.fail("the page has an xterm.js terminal but CATCH_TERMINAL "
                                    "missed it: textual-serve's textual.js changed")
                    shown = text and "projects and sessions" in text and "No projects" in text
                    return text if shown else None

                try:
                    text = await until_true(projects_screen, 120, "the projects screen")
                except AssertionError as e:
                    raise AssertionError(f"{e}; the terminal showed:\n{seen[0]}") from None
                await until_true(lambda: cdp.value(PAINTED), 30, "the page to paint")
                png = await cdp("Page.captureScreenshot", format="png")
                shot.parent.mkdir(parents=True, exist_ok=True)
                shot.write_bytes(base64.b64decode(png["data"]))
                return str(text)
    finally:
        browser.terminate()
        browser.wait(timeout=30)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """`posegen-tui --serve --home HOME` with POSEGEN_HOME elsewhere: only the served app's
    own --home can put the database in HOME. Yields (port, HOME, POSEGEN_HOME)."""
    home, env_home = tmp_path / "home", tmp_path / "env-home"
    port = free_port()
    env = dict(os.environ, POSEGEN_HOME=str(env_home), POSEGEN_TUI_GPU="none",
               PYTHONUNBUFFERED="1")
    out = tmp_path / "serve.out"
    with out.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "posegen_tui", "--serve", "--port", str(port),
             "--home", str(home), "--no-attach"],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: the apps it runs die with it

    def listening() -> bool:
        assert server.poll() is None, out.read_text()
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        deadline = time.monotonic() + 60
        while not listening():
            assert time.monotonic() < deadline, "the server never listened\n" + out.read_text()
            time.sleep(0.2)
        assert f"ssh -L {port}:127.0.0.1:{port} " in out.read_text()
        yield port, home, env_home
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.mark.slow  # starts chromium and an app per connection
@pytest.mark.skipif(CHROMIUM is None,
                    reason="needs chromium for the browser test (apt-get install chromium)")
def test_the_browser_shows_the_projects_screen(served: tuple[int, Path, Path],
                                               tmp_path: Path) -> None:
    port, home, env_home = served
    shot = (DOCS_SCREENSHOT if os.environ.get("POSEGEN_UPDATE_SCREENSHOTS") == "1"
            else tmp_path / "browser-projects.png")
    text = asyncio.run(show_in_chromium(f"http://127.0.0.1:{port}/", tmp_path / "profile",
                                        tmp_path / "chromium.log", shot))
    assert "posegen-tui · projects and sessions" in text
    assert (home / DB_NAME).is_file() and not (env_home / DB_NAME).exists()
    assert shot.read_bytes().startswith(b"\x89PNG")
