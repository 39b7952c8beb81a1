"""Prompt rules: the subject keyword, prompt files, Wan's negative prompt."""

from __future__ import annotations

import re
from pathlib import Path

# Order matters: the first keyword present wins, so "woman" beats "man".
KEYWORDS = ("woman", "girl", "man", "boy")

# Wan2.1's standard negative prompt (the model was trained with it).
NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，"
    "低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，"
    "形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)


class PromptError(ValueError):
    pass


def clean_prompt(text: str) -> str:
    """Collapse whitespace as Wan's tokenizer does, so character offsets agree."""
    return " ".join(text.split())


def find_keyword(text: str) -> tuple[str, int]:
    """Return (keyword, character offset) of the subject keyword in ``text``.

    Whole words only ("human" does not contain "man"), case-insensitive.
    """
    for word in KEYWORDS:
        m = re.search(rf"\b{word}\b", text, flags=re.IGNORECASE)
        if m:
            return word, m.start()
    raise PromptError(
        f"the prompt names no subject: it must contain one of {', '.join(KEYWORDS)} as a "
        f"whole word (background sharing finds the person by it). Prompt: {text[:80]!r}. "
        "Edit the prompt (or the prompt file) to say e.g. 'a woman ...'")


def read_prompt_file(path: str | Path) -> str:
    """The release's prompt files may hold several candidates: the longest line wins."""
    path = Path(path)
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except FileNotFoundError:
        raise PromptError(f"{path}: prompt file not found; pass --prompt TEXT or an "
                          "existing --prompt-file") from None
    except UnicodeDecodeError:
        raise PromptError(f"{path}: not UTF-8 text; save the prompt as plain text") from None
    lines = [ln for ln in lines if ln]
    if not lines:
        raise PromptError(f"{path}: the prompt file is empty; write one line describing "
                          "the reference image, naming the subject (woman/girl/man/boy)")
    return max(lines, key=len)
