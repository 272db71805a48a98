"""Story and topic keywords: class-based TF-IDF (c-TF-IDF) over English and Arabic words and word pairs.

Pure Python (no Ray, no database). The trend clusterer calls ``story_keywords`` with the documents of
some stories (or topics: any grouping, keyed by its id) and stores each one's keywords and ``label``.

**Analysis** (``terms``). Text is NFKC-normalised, Arabic harakat, superscript alef and tatweel are
removed, and it is cut into words of letters and digits, keeping internal apostrophes and hyphens
(``o'brien``, ``covid-19``). A word is analysed by its script: a word with Arabic letters as Arabic,
any other by the document's language (``KeywordDoc.language``; ``None``: the document's script, as
``storage.languages.script_language`` decides, so a Latin word in an Arabic document reads as English).

- English (and any language without a list below): lower-cased, a final possessive ``'s`` dropped,
  stopwords dropped: NLTK's English list as bm25s ships it (``STOPWORDS_EN_PLUS``, 179 function words;
  its ``STOPWORDS_EN``, Lucene's 33, leaves ``he``, ``has``, ``from``, ``after`` as "keywords") plus
  ``EXTRA_STOPWORDS_EN`` (modal verbs and reporting words; see there for the measurement). Other
  languages bm25s has a list for (French, German, Spanish...) use it.
- Arabic: matched on a normalised key (alef with hamza or madda and alef wasla ``أ إ آ ٱ`` -> bare alef,
  alef maqsura ``ى`` -> yeh ``ي``, teh marbuta ``ة`` -> heh,
  then the article with an attached conjunction or preposition, ``ال وال فال بال كال لل``, taken off
  when at least three letters remain), so ``الحكومة``, ``والحكومة`` and ``حكومة`` are one term; the
  keyword shown is the term's most frequent written form in the story (``الحكومة``). Stopwords: the
  Arabic list of Stopwords ISO (package ``stopwordsiso``, 480 words), normalised alike, also when they
  carry a conjunction or preposition (``وهذا``, ``بهذا``); tokens that are only clitics (``وال``).
- Every language: words without letters (``2018``) and words shorter than two letters are dropped.

Terms are the words left and the pairs of adjacent words (bigrams) when neither word was dropped and
only whitespace separates them (``bank of america`` gives no ``bank america``, a full stop ends a pair).

**c-TF-IDF** (Grootendorst 2022, BERTopic's ``ClassTfidfTransformer`` with its defaults): all
documents of a class are one document; the weight of term t in class c is

    W(t, c) = tf(t, c) / sum_t' tf(t', c)  *  log(1 + A / f(t))

where A is the average number of terms per class and f(t) the frequency of t over all classes (plus
``background``: term counts of documents outside these classes, e.g. the rest of the partition, as
``term_counts`` gives them, so a term common everywhere is not a keyword of the few classes asked about).

**Bigrams over their words.** A bigram is a keyword candidate when it occurs in at least
``min_bigram_docs`` documents of the class (a single headline gives no pairs). It *carries* one of its
words when it accounts for more than ``carry`` (half) of that word's occurrences in the class; a carried word
is left out and the bigram ranks at the better of its and its words' weights, so a story reads
``cambridge analytica``, not ``cambridge``, ``analytica``. ``label`` joins the first keywords that show
new words (a bigram extending an earlier single word replaces it).

Ties rank the smaller term first, so the output is deterministic.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import bm25s.stopwords as bm25s_stopwords
import stopwordsiso

from actors.keyword_index import primary_language
from storage.languages import ARABIC_LETTER, ARABIC_MARKS, script_language

logger = logging.getLogger(__name__)

#: A word: letters and digits, with single internal apostrophes or hyphens.
WORD = re.compile("[^\\W_]+(?:['\u2019\\-][^\\W_]+)*")
#: What may separate the two words of a bigram.
PAIR_GAP = re.compile(r"\s+")
#: Reporting verbs, modals and honorifics that news repeats whatever it is about. Measured on the 2,225
#: BBC News articles (``../shared/data/bbc_news``), one class per category: with NLTK's list alone
#: ``said`` is among the top 10 keywords of all 5 categories, ``also`` of 2, ``mr`` of 2 (and ``mr blair``,
#: ``mr brown`` stand for ``blair``, ``brown``), ``would`` of 1; with these none is. ``new`` stays (it is
#: in 2, but also in ``new york``, ``new zealand``).
EXTRA_STOPWORDS_EN = frozenset(
    {"said", "says", "say", "told", "would", "could", "also", "may", "might", "must", "shall"}
    | {"mr", "mrs", "ms"}
)
#: Stopwords of other languages by ISO 639-1 code (bm25s' lists).
_OTHER_STOPWORDS: dict[str, tuple[str, ...]] = {
    "da": bm25s_stopwords.STOPWORDS_DANISH,
    "de": bm25s_stopwords.STOPWORDS_GERMAN,
    "es": bm25s_stopwords.STOPWORDS_SPANISH,
    "fr": bm25s_stopwords.STOPWORDS_FRENCH,
    "it": bm25s_stopwords.STOPWORDS_ITALIAN,
    "nl": bm25s_stopwords.STOPWORDS_DUTCH,
    "no": bm25s_stopwords.STOPWORDS_NORWEGIAN,
    "pt": bm25s_stopwords.STOPWORDS_PORTUGUESE,
    "ru": bm25s_stopwords.STOPWORDS_RUSSIAN,
    "sv": bm25s_stopwords.STOPWORDS_SWEDISH,
    "tr": bm25s_stopwords.STOPWORDS_TURKISH,
}
#: Arabic letter variants unified in term keys (not in the forms shown).
_ARABIC_FOLD = str.maketrans(
    {"\u0623": "\u0627", "\u0625": "\u0627", "\u0622": "\u0627", "\u0671": "\u0627"}  # alef forms
    | {"\u0649": "\u064a", "\u0629": "\u0647"}  # alef maqsura -> yeh, teh marbuta -> heh
)
#: Article prefixes (with an attached conjunction or preposition) taken off Arabic keys, longest first.
_ARABIC_ARTICLES = ("وال", "فال", "بال", "كال", "لل", "ال")
#: Conjunctions and prepositions that may be attached to an Arabic stopword (``وهذا``, ``فبهذا``).
_ARABIC_PROCLITICS = ("وب", "وك", "ول", "فب", "فك", "فل", "و", "ف", "ب", "ك", "ل")
#: Letters kept in an Arabic key after its article is taken off.
_ARABIC_MIN_STEM = 3


def _fold_arabic(word: str) -> str:
    return word.translate(_ARABIC_FOLD)


def _clitic_only() -> frozenset[str]:
    """Tokens made of clitics alone: an optional conjunction, preposition or future ``س``, and article."""
    found = set()
    for conj in ("", "و", "ف"):
        for prep in ("", "ب", "ك", "ل", "س"):
            for article in ("", "ال"):
                found.add(conj + prep + article)
    found.add("لل")
    return frozenset(w for w in found if w)


#: Arabic stopwords, folded (Stopwords ISO's Arabic list, diacritics removed).
ARABIC_STOPWORDS = frozenset(_fold_arabic(ARABIC_MARKS.sub("", w)) for w in stopwordsiso.stopwords("ar"))
#: Arabic tokens that are only clitics (folded).
ARABIC_CLITIC_ONLY = _clitic_only()
#: English stopwords (see the module docstring).
ENGLISH_STOPWORDS = frozenset(bm25s_stopwords.STOPWORDS_EN_PLUS) | EXTRA_STOPWORDS_EN


@dataclass(frozen=True)
class KeywordDoc:
    """One document of a class: its text and language (ISO code, or ``None`` to read its script)."""

    text: str
    language: str | None = None


@dataclass(frozen=True)
class Term:
    """A unigram or bigram of a document: its matching ``key`` and the ``form`` it was written in."""

    key: str
    form: str

    @property
    def is_bigram(self) -> bool:
        return " " in self.key


def _arabic_key(form: str) -> str | None:
    """The key of an Arabic word, or ``None`` for a stopword or a clitic-only token."""
    folded = _fold_arabic(form)
    if folded in ARABIC_STOPWORDS or folded in ARABIC_CLITIC_ONLY:
        return None
    for clitic in _ARABIC_PROCLITICS:
        if folded.startswith(clitic) and folded[len(clitic) :] in ARABIC_STOPWORDS:
            return None
    for article in _ARABIC_ARTICLES:
        if folded.startswith(article) and len(folded) - len(article) >= _ARABIC_MIN_STEM:
            return folded[len(article) :]
    return folded


def _latin_key(form: str, stopwords: frozenset[str]) -> str | None:
    if form in stopwords:
        return None
    return form


def _stopwords(language: str | None) -> frozenset[str]:
    if language is None or language == "en":
        return ENGLISH_STOPWORDS
    return frozenset(_OTHER_STOPWORDS.get(language, ()))


def _words(normalized: str, language: str | None) -> list[tuple[Term | None, int, int]]:
    """Each word of a normalised text as its unigram term (``None`` when dropped) with its span."""
    latin_language = primary_language(language) or script_language(normalized)
    if latin_language == "ar":
        latin_language = "en"
    latin_stopwords = _stopwords(latin_language)
    found: list[tuple[Term | None, int, int]] = []
    for match in WORD.finditer(normalized):
        form = match.group().lower().replace("\u2019", "'")
        key: str | None = None
        if ARABIC_LETTER.search(form):
            key = _arabic_key(form)
        else:
            if form.endswith("'s"):
                form = form[:-2]
            key = _latin_key(form, latin_stopwords)
        keep = key is not None and len(form) >= 2 and any(ch.isalpha() for ch in form)
        found.append((Term(key, form) if keep and key is not None else None, match.start(), match.end()))
    return found


def terms(text: str, language: str | None) -> list[Term]:
    """The unigrams and bigrams of one document, in order, repeats kept (see "Analysis")."""
    normalized = ARABIC_MARKS.sub("", unicodedata.normalize("NFKC", text))
    words = _words(normalized, language)
    found: list[Term] = []
    for i, (term, _start, end) in enumerate(words):
        if term is None:
            continue
        found.append(term)
        if i + 1 < len(words):
            following, start, _end = words[i + 1]
            if following is not None and PAIR_GAP.fullmatch(normalized[end:start]):
                found.append(Term(f"{term.key} {following.key}", f"{term.form} {following.form}"))
    return found


def term_counts(docs: Iterable[KeywordDoc]) -> Counter[str]:
    """How often each term key occurs in ``docs``: a ``background`` for ``story_keywords``."""
    counts: Counter[str] = Counter()
    for doc in docs:
        counts.update(term.key for term in terms(doc.text, doc.language))
    return counts


@dataclass
class _Class:
    """The term statistics of one class (story or topic)."""

    counts: Counter[str]
    doc_counts: Counter[str]  # documents of the class each term occurs in
    forms: defaultdict[str, Counter[str]]

    @classmethod
    def of(cls, docs: Sequence[KeywordDoc]) -> _Class:
        counts: Counter[str] = Counter()
        doc_counts: Counter[str] = Counter()
        forms: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for doc in docs:
            doc_terms = terms(doc.text, doc.language)
            counts.update(term.key for term in doc_terms)
            doc_counts.update({term.key for term in doc_terms})
            for term in doc_terms:
                forms[term.key][term.form] += 1
        return cls(counts, doc_counts, forms)

    def form(self, key: str) -> str:
        """The most frequent written form of ``key`` (the smallest of equally frequent ones)."""
        return min(self.forms[key].items(), key=lambda item: (-item[1], item[0]))[0]


def story_keywords(
    docs: Mapping[int, Sequence[KeywordDoc]],
    *,
    top_n: int = 10,
    background: Mapping[str, int] | None = None,
    min_bigram_docs: int = 2,
    carry: float = 0.5,
) -> dict[int, list[tuple[str, float]]]:
    """The ``top_n`` keywords of each class with their c-TF-IDF weights, best first (module docstring).

    ``docs`` maps a class id (story or topic) to its documents; a class without terms gets ``[]``.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1; got {top_n}")
    classes = {class_id: _Class.of(class_docs) for class_id, class_docs in docs.items()}
    frequency: Counter[str] = Counter()
    for stats in classes.values():
        frequency.update(stats.counts)
    if background:
        frequency.update(background)
    sizes = [sum(stats.counts.values()) for stats in classes.values()]
    average = sum(sizes) / len(sizes) if sizes else 0.0
    result: dict[int, list[tuple[str, float]]] = {}
    for class_id, stats in classes.items():
        total = sum(stats.counts.values())
        weights = {
            key: count / total * math.log(1.0 + average / frequency[key])
            for key, count in stats.counts.items()
            if " " not in key or stats.doc_counts[key] >= min_bigram_docs
        }
        ranked = _prefer_bigrams(weights, stats.counts, carry)
        result[class_id] = [(stats.form(key), weight) for key, weight in ranked[:top_n]]
    logger.debug("keywords of %d classes, %d terms in all", len(classes), len(frequency))
    return result


def _prefer_bigrams(
    weights: Mapping[str, float], counts: Mapping[str, int], carry: float
) -> list[tuple[str, float]]:
    """Terms by weight, best first, carried words left out and their bigrams raised to their weight."""
    boosted = dict(weights)
    carried: set[str] = set()
    for key, weight in weights.items():
        if " " not in key:
            continue
        for word in key.split(" "):
            if word in weights and counts[key] > carry * counts[word]:
                carried.add(word)
                boosted[key] = max(boosted[key], weights[word], weight)
    ranked = [(key, weight) for key, weight in boosted.items() if key not in carried]
    ranked.sort(key=lambda item: (-item[1], item[0]))
    return ranked


def label(keywords: Sequence[tuple[str, float]], n: int = 3) -> str:
    """The first ``n`` keywords joined by ``", "``, each showing words no earlier one shows; a bigram
    that extends an earlier single word takes its place (``toyota``, ``toyota recall`` -> ``toyota recall``).
    """
    chosen: list[str] = []
    for keyword, _weight in keywords:
        words = keyword.split(" ")
        shown = {word for phrase in chosen for word in phrase.split(" ")}
        overlap = [word for word in words if word in shown]
        if not overlap:
            if len(chosen) == n:
                break
            chosen.append(keyword)
        elif len(overlap) == 1 and len(words) > 1 and overlap[0] in chosen:
            chosen[chosen.index(overlap[0])] = keyword
    return ", ".join(chosen)
