"""How a document's title and text are joined into the passage a model embeds."""

from __future__ import annotations


def embedding_text(title: str, text: str) -> str:
    """Title and text joined as one passage (``"Title. Text"``); either may be empty."""
    title, text = title.strip(), text.strip()
    if title and text:
        sep = " " if title[-1] in ".!?:;" else ". "
        return f"{title}{sep}{text}"
    return title or text
