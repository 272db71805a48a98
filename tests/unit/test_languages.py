"""Language identification of stored texts (storage.languages): pure, no database."""

from __future__ import annotations

import json

import pytest

from storage.languages import LanguageGuess, detect_language, normalize_code, script_language
from tests.conftest import SAMPLE, SHARED_DATA


def test_clear_text_is_identified_with_its_probability() -> None:
    guess = detect_language("Le chat est sur la table et il dort tranquillement ce soir.")
    assert guess.code == "fr"
    assert guess.confidence is not None and guess.confidence > 0.9


def test_arabic_text_and_its_regional_varieties_are_ar() -> None:
    guess = detect_language("تركيا محاطة بالبحار من ثلاث جهات: بحر إيجه من الغرب والبحر الأسود من الشمال")
    assert guess.code == "ar"
    assert normalize_code("arz") == "ar" and normalize_code("ary") == "ar"


def test_short_or_unsure_text_falls_back_to_the_declared_language_then_the_script() -> None:
    assert detect_language("short", declared="FR") == LanguageGuess("fr", None)
    latin = detect_language("hello")
    assert latin.code == "en" and latin.confidence is not None and latin.confidence < 0.5
    assert detect_language("تركيا").code == "ar"
    # A script that is neither Latin nor Arabic keeps the identifier's answer, however unsure.
    assert detect_language("Привет мир").code == "ru"
    assert detect_language("12345 -- !!") == LanguageGuess(None, None)


def test_script_language_is_how_queries_are_read() -> None:
    assert script_language("stormy daniels") == "en"
    assert script_language("تركيا") == "ar"
    assert script_language("2018") is None


def test_normalize_code() -> None:
    assert normalize_code(" EN_gb ") == "en-gb"
    assert normalize_code("") is None and normalize_code(None) is None


def test_every_sample_headline_gets_a_language_and_nearly_all_are_english() -> None:
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()[:1000]]
    codes = [detect_language(f"{r['title']}\n{r.get('text', '')}").code for r in rows]
    assert None not in codes
    assert codes.count("en") >= 990


@pytest.mark.skipif(not (SHARED_DATA / "sib200_ar_en").is_dir(), reason="needs ../shared/data")
def test_every_sib200_arabic_sentence_is_arabic() -> None:
    path = SHARED_DATA / "sib200_ar_en" / "arb_Arab" / "train.tsv"
    sentences = [line.split("\t")[-1] for line in path.read_text(encoding="utf-8").splitlines()[1:]]
    assert {detect_language(s).code for s in sentences} == {"ar"}
