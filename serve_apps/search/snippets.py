"""Search result snippets: the passage of a document's text where the query's words are densest.

Pure logic. The text is the document's first ``LEAD_CHARS`` characters (read with the results' other
fields: ``storage.documents.fetch_summaries_and_leads``); a window of about ``WIDTH`` characters is
chosen to hold the most distinct query words (ties: the earliest), widened to word boundaries, with an
ellipsis where it cuts the text. No word of the query in the lead: its beginning. Matching is by
lower-cased words of letters and digits of any script, prefix-wise (``march`` finds "marched"), so
English and Arabic work alike; clients highlight the same words (the console marks them).
"""

from __future__ import annotations

import re

LEAD_CHARS = 2000
WIDTH = 240
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def query_words(query: str) -> list[str]:
    """The query's distinct words of two characters or more, lower-cased, in order."""
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(query) if len(w) > 1))


def snippet(text: str, query: str, width: int = WIDTH) -> str | None:
    """A passage of ``text`` of about ``width`` characters around the query's words; None for no text."""
    text = " ".join(text.split())
    if not text:
        return None
    if len(text) <= width:
        return text
    words = query_words(query)
    hits = [
        (m.start(), next(w for w in words if m.group().lower().startswith(w)))
        for m in _WORD.finditer(text)
        if any(m.group().lower().startswith(w) for w in words)
    ]
    start = 0
    if hits:
        best = -1
        for i, (position, _) in enumerate(hits):
            distinct = {word for p, word in hits[i:] if p < position + width}
            if len(distinct) > best:
                best, start = len(distinct), position
        # Some context before the first hit, from a word boundary.
        start = max(0, start - width // 5)
        if start:
            space = text.find(" ", start)
            start = space + 1 if 0 <= space < start + 30 else start
    end = min(len(text), start + width)
    if end < len(text):
        space = text.rfind(" ", start, end)
        end = space if space > start + width // 2 else end
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")
