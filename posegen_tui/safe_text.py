"""User text (project and session names, prompts, paths) shown without being obeyed.

Names reach the screen from the database, where anyone who can run `posegen init` put
them: Textual markup in them (`[@click=app.quit]`) must not become styles or actions,
and control characters (ANSI/OSC escapes) must not reach the terminal.
"""

from __future__ import annotations

import unicodedata

from textual.content import Content
from textual.fuzzy import Matcher


def printable(text: str) -> str:
    """``text`` with control and format characters shown as ``\\xNN`` escapes."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " or unicodedata.category(ch) == "Zs"
                   else ch.encode("unicode_escape").decode("ascii") for ch in text)


def plain(text: str) -> Content:
    """Printable ``text`` as content that is never parsed as markup."""
    return Content(printable(text))


def highlight(matcher: Matcher, text: str) -> Content:
    """``matcher.highlight`` for a candidate that may hold markup-like brackets: the
    letters the query matched are styled, nothing in ``text`` is parsed."""
    text = printable(text)
    content = Content(text)
    _, offsets = matcher.fuzzy_search.match(matcher.query, text)
    for offset in offsets:
        if not text[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content
