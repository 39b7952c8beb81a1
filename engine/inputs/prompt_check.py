"""The keyword rule applied to a prompt, and where the keyword lands in umT5's tokens."""

from __future__ import annotations

import os
from dataclasses import dataclass

from engine.checkpoint.layout import CKPT_ENV, CheckpointLayout, resolve_checkpoint_dir
from engine.prompt import clean_prompt, find_keyword


@dataclass(frozen=True)
class KeywordReport:
    prompt: str  # cleaned (whitespace collapsed), as the job uses it
    keyword: str
    char: int  # offset of the keyword in ``prompt``
    token: int | None  # its index in the checkpoint's umT5 tokens; None without a checkpoint


def check_prompt(text: str, ckpt: str | os.PathLike[str] | None = None) -> KeywordReport:
    """Find the subject keyword (PromptError names the keywords if there is none).

    With ``ckpt`` (or $POSEGEN_CKPT_PATH) the keyword's token index is looked up with
    that checkpoint's tokenizer, as the engine will.
    """
    prompt = clean_prompt(text)
    keyword, char = find_keyword(prompt)
    token = None
    if ckpt or os.environ.get(CKPT_ENV):
        from engine.checkpoint.encoders import load_tokenizer

        layout = CheckpointLayout(resolve_checkpoint_dir(ckpt))
        token = load_tokenizer(layout.tokenizer).token_index_of_char(prompt, char)
    return KeywordReport(prompt, keyword, char, token)
