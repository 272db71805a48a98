"""``KeywordIndex``: BM25 keyword search (bm25s) over documents analysed per language.

Plain Python (no Ray), safe to share between threads (an actor with ``max_concurrency > 1``).

**Analysis.** Text is NFKC-normalised, Arabic diacritics and tatweel are removed, it is lowercased and cut
into words of two or more word characters (bm25s' own token pattern). Then, by language (the primary
subtag of an ISO code: ``"en-GB"`` is ``"en"``): English drops Lucene's English stopwords and applies the
Snowball English stemmer; Arabic applies the Snowball Arabic stemmer (bm25s ships no Arabic stopword
list, so none are dropped); any other or unknown language is only lowercased. A query is analysed as
its ``language`` argument says, else as Arabic when most of its letters are Arabic, else as English.

**Updates and reads.** ``upsert`` / ``delete`` change the corpus (one token list per document, cached,
so a rebuild never analyses a document twice) and take effect for reads at once in one direction: the
old version of a changed or deleted document is hidden from the next search on (a tombstone), while
new text becomes findable when the bm25s index is rebuilt by ``refresh()``. ``refresh()`` builds a new
bm25s retriever next to the one being read and swaps one reference, so searches never wait for a
rebuild; a search that started on the old retriever finishes on it.

Rebuilds happen (1) when ``refresh()`` is called (the actor shell does it on a timer), (2) inside an
``upsert`` / ``delete`` once ``rebuild_after`` documents are pending, and (3) inside ``search`` when
changes are pending and the whole corpus has at most ``refresh_on_search_max`` documents, so small
indexes (tests, development) read their own writes; a rebuild costs about 0.1 s per 1,000 documents of
SciFact abstracts on one core (their analysis happened in ``upsert``). A search never waits for a
rebuild another thread is running: it reads the current retriever instead.

``search`` scores every document (``get_scores_from_ids``, each distinct query term once), drops
tombstones, applies ``doc_filter`` to every document with a nonzero score, and only then picks the top
``k``: a filter that rejects the best documents still gets ``k`` results whenever ``k`` allowed
documents match. Ties rank the smaller id first. With ``normalize=True`` scores are divided by the
query's upper bound (each term's best score in any document, summed; kept per build), which puts them
on one scale across queries for hybrid fusion (``actors.fusion``, method ``"convex"``).

Measured on SciFact (``bench/search_quality.py``): nDCG@10 0.701 on the 809 train claims, against 0.696
for bm25s' README recipe (k1 1.5, same stemmer and stopwords); counting a repeated query term once is
+0.005 of that.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

from actors.vector_index import SearchHits

logger = logging.getLogger(__name__)

#: Words of two or more word characters (bm25s' default token pattern).
TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")
#: Arabic harakat, superscript alef and tatweel: removed before tokenizing (they would split words).
ARABIC_MARKS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e8\u06ea-\u06ed\u0640]")
#: Letters counted as Arabic script when guessing a query's language.
ARABIC_LETTER = re.compile("[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff]")


@dataclass(frozen=True)
class Analyzer:
    """How the text of one language becomes index terms."""

    stemmer: str | None  # a PyStemmer (Snowball) algorithm
    stopwords: frozenset[str] = frozenset()


#: Analysis per language (ISO 639-1 code); languages not listed are only lowercased and tokenized.
ANALYZERS: dict[str, Analyzer] = {
    "en": Analyzer(stemmer="english", stopwords=frozenset(STOPWORDS_EN)),
    "ar": Analyzer(stemmer="arabic"),
}
#: Analysis of a language not in ``ANALYZERS`` (or of no language).
PLAIN = Analyzer(stemmer=None)

_stemmers = threading.local()  # PyStemmer objects are not thread-safe: one per thread and algorithm


def _stemmer(algorithm: str) -> Stemmer.Stemmer:
    cache: dict[str, Stemmer.Stemmer] | None = getattr(_stemmers, "by_algorithm", None)
    if cache is None:
        cache = _stemmers.by_algorithm = {}
    if algorithm not in cache:
        cache[algorithm] = Stemmer.Stemmer(algorithm)
    return cache[algorithm]


def primary_language(language: str | None) -> str | None:
    """``"en-GB"`` -> ``"en"``; ``None`` or blank -> ``None``."""
    if not language or not language.strip():
        return None
    return language.strip().replace("_", "-").split("-")[0].lower()


def detect_query_language(text: str) -> str:
    """``"ar"`` when most letters of ``text`` are Arabic script, else ``"en"``."""
    letters = sum(ch.isalpha() for ch in text)
    arabic = len(ARABIC_LETTER.findall(text))
    return "ar" if letters and arabic * 2 > letters else "en"


def analyze(text: str, language: str | None) -> list[str]:
    """Index terms of ``text`` in ``language`` (see the module docstring); repeated terms are kept."""
    analyzer = ANALYZERS.get(primary_language(language) or "", PLAIN)
    normalized = ARABIC_MARKS.sub("", unicodedata.normalize("NFKC", text)).lower()
    words = TOKEN_PATTERN.findall(normalized)
    if analyzer.stopwords:
        words = [w for w in words if w not in analyzer.stopwords]
    if analyzer.stemmer is not None and words:
        words = _stemmer(analyzer.stemmer).stemWords(words)
    return words


@dataclass(frozen=True)
class _View:
    """What searches read, swapped as one reference: a retriever, its rows' ids, hidden rows."""

    retriever: bm25s.BM25 | None
    row_ids: np.ndarray  # int64 document id of each retriever row
    row_of: dict[int, int] = field(repr=False)  # document id -> row (shared by views of one retriever)
    term_max: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0, dtype=np.float32))
    hidden: frozenset[int] = frozenset()  # rows whose document was changed or deleted since the build

    @property
    def size(self) -> int:
        return len(self.row_ids) - len(self.hidden)

    def hiding(self, ids: Sequence[int]) -> _View:
        rows = {self.row_of[i] for i in ids if i in self.row_of}
        if rows <= self.hidden:
            return self
        return _View(self.retriever, self.row_ids, self.row_of, self.term_max, self.hidden | rows)


_EMPTY_VIEW = _View(None, np.empty(0, dtype=np.int64), {})


class KeywordIndex:
    """BM25 over a mutable corpus; see the module docstring for analysis, freshness and threading."""

    def __init__(
        self,
        *,
        k1: float = 1.2,
        b: float = 0.75,
        method: str = "lucene",
        rebuild_after: int = 10_000,
        refresh_on_search_max: int = 5_000,
    ) -> None:
        if rebuild_after < 1:
            raise ValueError(f"rebuild_after must be at least 1; got {rebuild_after}")
        self.k1 = k1
        self.b = b
        self.method = method
        self.rebuild_after = rebuild_after
        self.refresh_on_search_max = refresh_on_search_max
        self._tokens: dict[int, tuple[str, ...]] = {}  # the corpus: document id -> its terms
        self._pending: set[int] = set()  # ids changed since the last build started
        self._view = _EMPTY_VIEW
        self._lock = threading.Lock()  # guards _tokens, _pending and the swap of _view
        self._refresh_lock = threading.Lock()  # one rebuild at a time

    @property
    def size(self) -> int:
        """Documents searchable now (in the current build, not hidden by a later change)."""
        return self._view.size

    @property
    def pending(self) -> int:
        """Documents changed or deleted since the current build started (found after ``refresh()``)."""
        return len(self._pending)

    def upsert(self, ids: Sequence[int], texts: Sequence[str], languages: Sequence[str | None]) -> None:
        """Add documents, or replace the text of those whose id exists (the last of a repeated id wins)."""
        if not len(ids) == len(texts) == len(languages):
            raise ValueError(
                f"upsert needs one text and one language per id; got {len(ids)} ids, {len(texts)} texts "
                f"and {len(languages)} languages"
            )
        analysed = {
            int(i): tuple(analyze(t, lang)) for i, t, lang in zip(ids, texts, languages, strict=True)
        }  # outside the lock: analysis is the slow part
        with self._lock:
            changed = [i for i, terms in analysed.items() if self._tokens.get(i) != terms]
            for i in changed:
                self._tokens[i] = analysed[i]
            self._mark(changed)
        self._maybe_rebuild()

    def delete(self, ids: Sequence[int]) -> None:
        """Remove documents; unknown ids are ignored."""
        with self._lock:
            gone = [int(i) for i in ids if self._tokens.pop(int(i), None) is not None]
            self._mark(gone)
        self._maybe_rebuild()

    def _mark(self, ids: list[int]) -> None:
        # Under self._lock: hide the old versions from readers now, rebuild later.
        if ids:
            self._pending.update(ids)
            self._view = self._view.hiding(ids)

    def _maybe_rebuild(self) -> None:
        if len(self._pending) >= self.rebuild_after:
            self.refresh()

    def refresh(self, *, wait: bool = True) -> bool:
        """Rebuild the bm25s index from the current corpus if anything changed; whether it rebuilt.

        With ``wait=False`` it returns ``False`` at once when another thread is rebuilding.
        """
        if not self._refresh_lock.acquire(blocking=wait):
            return False
        try:
            with self._lock:
                if not self._pending:
                    return False
                corpus = list(self._tokens.items())
                self._pending = set()
            started = time.perf_counter()
            try:
                view = self._build(corpus)
            except BaseException:
                with self._lock:  # nothing was swapped: every change is still pending
                    self._pending.update(i for i, _ in corpus)
                raise
            with self._lock:
                # Documents changed while building are stale in the new build: hidden until the next.
                self._view = view.hiding(list(self._pending))
            logger.info(
                "keyword index rebuilt: %d documents in %.3f s, %d changed since",
                len(corpus),
                time.perf_counter() - started,
                len(self._pending),
            )
            return True
        finally:
            self._refresh_lock.release()

    def _build(self, corpus: list[tuple[int, tuple[str, ...]]]) -> _View:
        row_ids = np.fromiter((i for i, _ in corpus), dtype=np.int64, count=len(corpus))
        row_of = {i: row for row, (i, _) in enumerate(corpus)}
        if not any(terms for _, terms in corpus):  # bm25s cannot index a corpus without a term
            return _View(None, row_ids, row_of)
        retriever = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        retriever.index([list(terms) for _, terms in corpus], show_progress=False)
        # The best score each term gives any document: the sum over a query's terms bounds its scores.
        data, indptr = retriever.scores["data"], retriever.scores["indptr"]
        term_max = np.zeros(len(indptr) - 1, dtype=np.float32)
        starts = indptr[:-1][np.diff(indptr) > 0]
        if len(starts):
            term_max[np.diff(indptr) > 0] = np.maximum.reduceat(data, starts)
        return _View(retriever, row_ids, row_of, term_max)

    def search(
        self,
        query: str,
        k: int,
        *,
        language: str | None = None,
        doc_filter: Callable[[np.ndarray], np.ndarray] | None = None,
        normalize: bool = False,
    ) -> SearchHits:
        """The ``k`` best documents for ``query`` (one row of hits); only documents that share a term.

        ``doc_filter`` gets the int64 ids of every matching document and returns a bool mask of those
        allowed. Scores are BM25; with ``normalize`` they are divided by the query's upper bound (the
        sum over its terms of the best score the term gives any document), so they lie in (0, 1] and
        mean the same across queries: what hybrid fusion (``actors.fusion``, method ``"convex"``) wants.
        A query counts each distinct term once.
        """
        if self._pending and len(self._tokens) <= self.refresh_on_search_max:
            self.refresh(wait=False)
        empty = SearchHits(ids=[[]], scores=[[]])
        terms = analyze(query, language or detect_query_language(query))
        view = self._view  # one read: the retriever, its ids and its hidden rows belong together
        if k <= 0 or not terms or view.retriever is None:
            return empty
        term_ids = list(dict.fromkeys(view.retriever.get_tokens_ids(terms)))
        if not term_ids:
            return empty
        scores = np.asarray(view.retriever.get_scores_from_ids(term_ids))
        if normalize:
            scores = scores / max(float(view.term_max[term_ids].sum()), np.finfo(np.float32).tiny)
        rows = np.flatnonzero(scores > 0)
        if view.hidden:
            rows = rows[~np.isin(rows, np.fromiter(view.hidden, dtype=np.int64))]
        if doc_filter is not None and len(rows):
            allowed = np.asarray(doc_filter(view.row_ids[rows]), dtype=bool)
            if allowed.shape != rows.shape:
                raise ValueError(
                    f"doc_filter returned a mask of shape {allowed.shape} for {len(rows)} ids; "
                    "it must return one bool per id"
                )
            rows = rows[allowed]
        if len(rows) > k:
            # Keep every row tied with the k-th score, then order by (score desc, id asc).
            kth = np.partition(scores[rows], len(rows) - k)[len(rows) - k]
            rows = rows[scores[rows] >= kth]
        order = np.lexsort((view.row_ids[rows], -scores[rows]))[:k]
        rows = rows[order]
        return SearchHits(
            ids=[[int(i) for i in view.row_ids[rows]]],
            scores=[[float(s) for s in scores[rows]]],
        )
