"""The language of a stored text: identified by py3langid, with its confidence. Pure (no database).

Every document Pulse stores has a language, because the keyword index analyses a document by it
(stemming and stopwords) and the ``lang`` filter selects by it. A record that declares its language
keeps it; any other is identified here, whoever writes it (``pulse ingest``, the collector, the CMS
sync, migration 0006 for documents stored before). It lives in ``storage`` because the repository and
that migration both need it, and they may import nothing above ``storage``.

The rules, in order:

1. Text of at least ``MIN_LANGID_CHARS`` characters goes to py3langid (normalised probabilities over
   its 97 languages). Its answer stands when its probability is at least ``MIN_CONFIDENCE``.
2. Otherwise (short or ambiguous text: a headline "Chrissy Teigen, John Legend Announce Name Of Baby
   Boy" is Luxembourgish at 0.22) the language the page declared, if any, else the language of the
   text's script (``script_language``): Arabic for Arabic script, English for Latin script (the
   language Latin-script queries are analysed in); text in any other script keeps py3langid's answer.
   The confidence kept is the probability py3langid gives the stored language, so a weak guess stays
   visibly weak.

Regional Arabic varieties py3langid names (``arz``, ``ary``...) are stored as ``ar``: one Arabic
analysis and one ``lang=ar`` filter cover them.

Measured on the bundled HuffPost sample (4,782 headline + summary records): 4,780 stored as English
(141 of them by rule 2, the identifier having been unsure), 2 as Nigerian Pidgin (probability >= 0.5).
All 701 Arabic sentences of SIB-200 are ``ar``; all 5,183 SciFact abstracts ``en`` (960 a second).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

#: Texts shorter than this (after stripping) are not given to the identifier alone: too unreliable.
MIN_LANGID_CHARS = 40
#: The identifier's answer is taken as it is from this probability on; below it rule 2 applies.
MIN_CONFIDENCE = 0.5
#: Characters of a text the identifier reads (its answer is stable well before this).
SAMPLE_CHARS = 4000
#: Regional varieties stored under their macrolanguage.
MACROLANGUAGE = {"arz": "ar", "ary": "ar", "arb": "ar", "acm": "ar", "apc": "ar", "ajp": "ar", "aeb": "ar"}
#: Letters of the Arabic script (Arabic, its supplements and presentation forms).
ARABIC_LETTER = re.compile("[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff]")
#: Letters of the Latin script (ASCII, Latin-1, Latin Extended-A and -B).
LATIN_LETTER = re.compile("[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]")

#: Arabic harakat, superscript alef and tatweel: they would split words (keyword and trend analysis, slugs).
ARABIC_MARKS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e8\u06ea-\u06ed\u0640]")


@dataclass(frozen=True)
class LanguageGuess:
    """An ISO 639-1 code (or ``None`` for a text without letters) and the identifier's probability for
    it (``None`` when the language was declared, not identified)."""

    code: str | None
    confidence: float | None


@functools.cache
def _identifier() -> Any:
    # Loaded on first use, once per process (about 0.2 s), never at import time.
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def script_language(text: str) -> str | None:
    """``"ar"`` when most letters of ``text`` are Arabic script, ``"en"`` for other text with letters,
    ``None`` for text without letters. Queries and unidentified documents are analysed by this."""
    letters = sum(ch.isalpha() for ch in text)
    if not letters:
        return None
    return "ar" if len(ARABIC_LETTER.findall(text)) * 2 > letters else "en"


def normalize_code(code: str | None) -> str | None:
    """``" EN_gb "`` -> ``"en-gb"``; a regional Arabic variety -> ``"ar"``; blank -> ``None``."""
    if code is None or not code.strip():
        return None
    cleaned = code.strip().replace("_", "-").lower()
    return MACROLANGUAGE.get(cleaned, cleaned)


def detect_language(text: str, *, declared: str | None = None) -> LanguageGuess:
    """The language of ``text`` by the rules of the module docstring; ``declared`` is what the page or
    record said (used only when the identifier is unsure)."""
    sample = unicodedata.normalize("NFC", text[:SAMPLE_CHARS])
    declared_code = normalize_code(declared)
    script = script_language(sample)
    if script is None:
        return LanguageGuess(declared_code, None)
    long_enough = len(sample.strip()) >= MIN_LANGID_CHARS
    if not long_enough and declared_code is not None:
        return LanguageGuess(declared_code, None)
    ranked: list[tuple[str, float]] = _identifier().rank(sample)
    best, probability = ranked[0]
    code = normalize_code(best)
    if long_enough and probability >= MIN_CONFIDENCE:
        return LanguageGuess(code, round(float(probability), 4))
    if declared_code is not None:
        return LanguageGuess(declared_code, None)
    letters = sum(ch.isalpha() for ch in sample)
    if script == "en" and len(LATIN_LETTER.findall(sample)) * 2 <= letters:
        return LanguageGuess(code, round(float(probability), 4))  # neither Latin nor Arabic script
    fallback = next((p for lang, p in ranked if normalize_code(lang) == script), 0.0)
    return LanguageGuess(script, round(float(fallback), 4))
