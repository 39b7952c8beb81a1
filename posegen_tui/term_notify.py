"""A desktop notification by terminal escape: which one this terminal understands.

Three protocols exist and no terminal answers a query about them, so the choice comes
from what terminals put in their environment (`desktop_escape`):

- OSC 9 (``ESC ] 9 ; text BEL``, iTerm2's): iTerm2 (TERM_PROGRAM=iTerm.app, or
  LC_TERMINAL=iTerm2, which also crosses SSH), WezTerm, ghostty (TERM=xterm-ghostty,
  which crosses SSH), Windows Terminal (WT_SESSION).
- OSC 99 (``ESC ] 99 ; ; text ESC \\``, kitty's own): kitty (TERM=xterm-kitty,
  KITTY_WINDOW_ID).
- OSC 777 (``ESC ] 777 ; notify ; title ; body BEL``): foot (TERM=foot*), urxvt
  (TERM=rxvt*, with its notify extension), VTE terminals such as GNOME Terminal and
  Tilix (VTE_VERSION), konsole (KONSOLE_VERSION).

TERM is checked first: each terminal sets it for itself, while the other variables
leak into terminals started from another one. Inside tmux, TERM and TERM_PROGRAM
name tmux; the outer terminal's variables (inherited when the tmux server started)
decide, and the escape goes through tmux's passthrough (``ESC P tmux; ... ESC \\``,
inner ESCs doubled), which tmux >= 3.3 forwards with ``set -g allow-passthrough on``
and otherwise drops without harm. GNU screen gets none (its passthrough differs).
``POSEGEN_NOTIFY=0`` turns the escape off; ``osc9``/``osc99``/``osc777`` force one.
"""

from __future__ import annotations

from collections.abc import Mapping

ENV = "POSEGEN_NOTIFY"
OFF = ("0", "off", "no", "false")
ESC, BEL, ST = "\x1b", "\x07", "\x1b\\"


def protocol(env: Mapping[str, str]) -> str | None:
    """Which escape: osc9, osc99, osc777, or None (no escape: the bell alone)."""
    choice = env.get(ENV, "").strip().lower()
    if choice in OFF:
        return None
    if choice in ("osc9", "osc99", "osc777"):
        return choice
    if env.get("STY"):
        return None
    term = "" if env.get("TMUX") else env.get("TERM", "")
    program = "" if env.get("TMUX") else env.get("TERM_PROGRAM", "")
    if term == "xterm-kitty":
        return "osc99"
    if term == "xterm-ghostty":
        return "osc9"
    if term.startswith(("foot", "rxvt")):
        return "osc777"
    if program in ("iTerm.app", "WezTerm", "ghostty"):
        return "osc9"
    if env.get("KITTY_WINDOW_ID"):
        return "osc99"
    if env.get("LC_TERMINAL") == "iTerm2" or env.get("WT_SESSION") or \
            env.get("WEZTERM_PANE") or env.get("GHOSTTY_RESOURCES_DIR"):
        return "osc9"
    if env.get("VTE_VERSION") or env.get("KONSOLE_VERSION"):
        return "osc777"
    return None


def _clean(text: str) -> str:
    """No control characters: a name must not end the escape early or start another."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def desktop_escape(title: str, body: str, env: Mapping[str, str]) -> str | None:
    """The escape that shows ``title``/``body`` as a desktop notification, or None."""
    kind = protocol(env)
    title, body = _clean(title), _clean(body)
    if kind == "osc9":
        seq = f"{ESC}]9;{title}: {body}{BEL}"
    elif kind == "osc99":
        seq = f"{ESC}]99;;{title}: {body}{ST}"
    elif kind == "osc777":
        seq = f"{ESC}]777;notify;{title.replace(';', ',')};{body}{BEL}"
    else:
        return None
    if env.get("TMUX"):
        seq = f"{ESC}Ptmux;{seq.replace(ESC, ESC + ESC)}{ST}"
    return seq
