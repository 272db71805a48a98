"""``KeywordIndex``: BM25 keyword search (bm25s) over documents analysed per language.

Plain Python (no Ray), safe to share between threads (an actor with ``max_concurrency > 1``).

**Analysis.** Text is NFKC-normalised, Arabic diacritics and tatweel are removed, it is lowercased and cut
into words of two or more word characters (bm25s' own token pattern). Then, by language (the primary
subtag of an ISO code: ``"en-GB"`` is ``"en"``): English drops Lucene's English stopwords and applies the
Snowball English stemmer; Arabic applies the Snowball Arabic stemmer (bm25s ships no Arabic stopword
list, so none are dropped); any other language is only lowercased ("plain"). A document without a
language is analysed by its script (``storage.languages.script_language``: Arabic or English), the
rule queries follow too, so a document and a query never meet analysed differently.

**One term space per analysis.** Index terms carry their analysis as a prefix (``en:daniel``,
``ar:تركي``, ``xx:stormy`` for plain), so BM25's document frequencies are counted per analysis and an
English stem never matches a plain word of another language by chance. A query is analysed once for
every analysis a matching document could have had: with a ``lang`` filter, the analyses of those
languages; without one, the analysis of the query's script and the plain one (a Latin-script query
finds English documents by stems and French or German ones by their words; an Arabic one Arabic
documents by stems and Persian or Urdu ones by words); a query without letters (``2018``) all of them.
Each analysis scores only its own documents, and with ``normalize`` each is divided by its own upper
bound, so hybrid fusion sees one scale whatever the document's language.

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
on one scale across queries for hybrid fusion (``serve_apps.search.fusion``, method ``"convex"``).

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

from actors.vector_search import SearchHits
from storage.languages import ARABIC_MARKS, script_language

logger = logging.getLogger(__name__)

#: Words of two or more word characters (bm25s' default token pattern).
TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")


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
#: Analysis of a language not in ``ANALYZERS``.
PLAIN = Analyzer(stemmer=None)
#: The term prefix of plain analysis (``ANALYZERS``' keys are the others).
PLAIN_KEY = "xx"

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


def analysis_key(language: str | None, text: str) -> str:
    """Which analysis a text gets: its language's (``"en"``, ``"ar"``), plain (``"xx"``) for another
    language, and for no language the analysis of its script."""
    primary = primary_language(language) or script_language(text)
    if primary is None:
        return PLAIN_KEY
    return primary if primary in ANALYZERS else PLAIN_KEY


def query_keys(query: str, languages: Sequence[str] = ()) -> list[str]:
    """The analyses a query is read in: those of ``languages`` (a ``lang`` filter) when given, else its
    script's and the plain one, else (no letters) every analysis."""
    if languages:
        return list(dict.fromkeys(analysis_key(lang, query) for lang in languages))
    script = script_language(query)
    if script is None:
        return [*ANALYZERS, PLAIN_KEY]
    return [script, PLAIN_KEY]


def index_terms(text: str, language: str | None) -> list[str]:
    """The prefixed terms a document is indexed by (see "One term space per analysis")."""
    key = analysis_key(language, text)
    return [f"{key}:{word}" for word in analyze(text, None if key == PLAIN_KEY else key)]


def analyze(text: str, language: str | None) -> list[str]:
    """Words of ``text`` analysed for ``language`` (``None``: plain); repeated words are kept."""
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

    def ids(self) -> np.ndarray:
        """Ids (int64) of the documents searchable now: the current build's rows less the hidden ones."""
        view = self._view
        if not view.hidden:
            return view.row_ids.copy()
        keep = np.ones(len(view.row_ids), dtype=bool)
        keep[sorted(view.hidden)] = False
        return view.row_ids[keep]

    def upsert(self, ids: Sequence[int], texts: Sequence[str], languages: Sequence[str | None]) -> None:
        """Add documents, or replace the text of those whose id exists (the last of a repeated id wins)."""
        if not len(ids) == len(texts) == len(languages):
            raise ValueError(
                f"upsert needs one text and one language per id; got {len(ids)} ids, {len(texts)} texts "
                f"and {len(languages)} languages"
            )
        analysed = {
            int(i): tuple(index_terms(t, lang)) for i, t, lang in zip(ids, texts, languages, strict=True)
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
        languages: Sequence[str] = (),
        doc_filter: Callable[[np.ndarray], np.ndarray] | None = None,
        normalize: bool = False,
    ) -> SearchHits:
        """The ``k`` best documents for ``query`` (one row of hits); only documents that share a term.

        ``languages`` are those a ``lang`` filter allows (they choose the query's analyses: see the
        module docstring; the filter itself is ``doc_filter``'s). ``doc_filter`` gets the int64 ids of
        every matching document and returns a bool mask of those allowed. Scores are BM25; with
        ``normalize`` they are divided by the query's upper bound (the sum over its terms of the best
        score the term gives any document, per analysis), so they lie in (0, 1] and mean the same
        across queries: what hybrid fusion (``serve_apps.search.fusion``, method ``"convex"``) wants.
        A query counts each distinct term once.
        """
        if self._pending and len(self._tokens) <= self.refresh_on_search_max:
            self.refresh(wait=False)
        empty = SearchHits(ids=[[]], scores=[[]])
        view = self._view  # one read: the retriever, its ids and its hidden rows belong together
        if k <= 0 or view.retriever is None:
            return empty
        scores: np.ndarray | None = None
        for key in query_keys(query, languages):
            words = analyze(query, None if key == PLAIN_KEY else key)
            term_ids = list(dict.fromkeys(view.retriever.get_tokens_ids([f"{key}:{w}" for w in words])))
            if not term_ids:
                continue
            part = np.asarray(view.retriever.get_scores_from_ids(term_ids))
            if normalize:  # each analysis by its own bound: its documents score nothing in the others
                part = part / max(float(view.term_max[term_ids].sum()), np.finfo(np.float32).tiny)
            scores = part if scores is None else scores + part
        if scores is None:
            return empty
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
