"""Versioned prompt templates, and fitting them to a token budget.

A template is a package data file of this package, read with ``importlib.resources``; its version is its
file name (``story_summary.v1.md`` is version ``story_summary.v1``): a changed prompt is a new file, so
what a prompt wrote records which prompt it was and is regenerated when the prompt changes. A file has a
``## system`` and a ``## user`` section (text before them is a note for maintainers, never sent) with
``string.Template`` placeholders; one placeholder (the slot) takes a list of items, as many as fit.

Token counts are estimated without a tokenizer (none can be downloaded offline): ``estimate_tokens``.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

#: Tokens of chat framing per message (role markers) added to an estimate.
MESSAGE_TOKENS = 4
#: The fewest tokens worth giving one item of the slot.
MIN_ITEM_TOKENS = 24


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` by characters: GPT-style BPE vocabularies take about 4 characters of English
    per token and 1-3 of Arabic, Cyrillic or CJK text, so an ASCII character counts 1/4 and any other
    1/2 (rounded up). Good for budgets and worst cases; bill by the ``usage`` a server returns."""
    ascii_chars = sum(1 for ch in text if ch < "\x80")
    return math.ceil(ascii_chars / 4 + (len(text) - ascii_chars) / 2)


def cut_to_tokens(text: str, tokens: int) -> str:
    """The longest prefix of ``text`` within ``tokens`` (by ``estimate_tokens``), ending at a word
    boundary when one is near."""
    if estimate_tokens(text) <= tokens:
        return text
    budget, end = float(tokens), 0
    for end, ch in enumerate(text):  # noqa: B007 (end is read after the loop)
        budget -= 0.25 if ch < "\x80" else 0.5
        if budget < 0:
            break
    head = text[:end]
    space = head.rfind(" ")
    return (head[:space] if space > len(head) * 0.8 else head).rstrip()


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: the two chat messages, their estimated tokens, and how many items it shows."""

    system: str
    user: str
    tokens: int
    items: int


@dataclass(frozen=True)
class PromptTemplate:
    """A versioned prompt file (module docstring)."""

    version: str
    system: str
    user: str

    @classmethod
    def load(cls, name: str) -> PromptTemplate:
        text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
        _, found, rest = text.partition("\n## system\n")
        system, found_user, user = rest.partition("\n## user\n")
        if not found or not found_user:
            raise ValueError(f"prompt {name} needs a '## system' and a '## user' section")
        return cls(version=name.removesuffix(".md"), system=system.strip(), user=user.strip())

    def render(
        self, values: Mapping[str, str], *, slot: str, items: Sequence[str], max_tokens: int
    ) -> Prompt:
        """The prompt with ``values`` filled in and, in ``slot``, as many of ``items`` (in order, blank
        line apart, each cut to an equal share of what is left) as fit in ``max_tokens``; ``items`` of the
        result is 0 when none fits."""
        system = string.Template(self.system).safe_substitute(values)
        frame = string.Template(self.user).safe_substitute(values, **{slot: ""})
        left = max_tokens - estimate_tokens(system) - estimate_tokens(frame) - 2 * MESSAGE_TOKENS
        share = max(left // max(len(items), 1), MIN_ITEM_TOKENS)
        shown: list[str] = []
        for item in items:
            room = min(share, left - 1)  # 1: the blank line joining two items
            if room < MIN_ITEM_TOKENS:
                break
            shown.append(cut_to_tokens(item, room))
            left -= estimate_tokens(shown[-1]) + 1
        user = string.Template(self.user).safe_substitute(values, **{slot: "\n\n".join(shown)})
        tokens = estimate_tokens(system) + estimate_tokens(user) + 2 * MESSAGE_TOKENS
        return Prompt(system=system, user=user, tokens=tokens, items=len(shown))
