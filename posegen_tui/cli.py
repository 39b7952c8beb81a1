"""`posegen-tui`: watch and steer PoseGen sessions in the terminal.

Quitting never stops the engine: workers run in their own process sessions,
and the app only reads the session store, so reopening it (or a second copy)
shows the same sessions. Set POSEGEN_TUI_GPU=fake|none|nvml to pick the GPU
source (default nvml), POSEGEN_TUI_GRAPHICS=halfcell|sixel|tgp how the player draws
(default: what the terminal answers).

`--serve` serves the same app in a browser tab instead (textual-serve): on
127.0.0.1:8000 unless told otherwise, with the `ssh -L` line to reach it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sessions.store import StoreError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posegen-tui", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", action="store_true",
                   help="create (once) and run a tiny random-weight demo project, then show it")
    p.add_argument("--session", type=int, help="open this session's view at start")
    p.add_argument("--home", type=Path, help="posegen home (default: $POSEGEN_HOME)")
    p.add_argument("--no-attach", action="store_true",
                   help="start on the projects list even if a session is running")
    web = p.add_argument_group("in a browser")
    web.add_argument("--serve", action="store_true",
                     help="serve the app (with the options above) in a browser tab; prints "
                          "the ssh -L line and the URL")
    web.add_argument("--port", type=int, help="port to serve on (default: 8000)")
    web.add_argument("--host", help="address to listen on (default: 127.0.0.1, this machine "
                                    "only); another one needs --allow-remote")
    web.add_argument("--allow-remote", action="store_true",
                     help="let --host be an address other machines reach (no authentication)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.serve:
        from posegen_tui.serve import serve

        return serve(args)
    given = [o for o, v in (("--port", args.port), ("--host", args.host),
                            ("--allow-remote", args.allow_remote or None)) if v is not None]
    if given:
        parser.error(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --serve")
    from posegen_tui.app import PosegenApp
    from posegen_tui.widgets.graphics import detect

    try:
        app = PosegenApp(home=args.home, demo=args.demo, session=args.session,
                         auto_open=not args.no_attach, handle_hangup=True,
                         graphics=detect())  # before the app owns the terminal
        code = app.run()
    except StoreError as e:
        print(f"posegen-tui: error: {e}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
