"""Slugs of CMS items and taxonomy (storage.cms_content.make_slug): any script, no word cut by a mark."""

from __future__ import annotations

from storage.cms_content import SLUG_MAX, make_slug


def test_latin_and_arabic_slugs() -> None:
    assert make_slug("Desert Rain, Again!") == "desert-rain-again"
    assert make_slug("مطر الصحراء") == "مطر-الصحراء"


def test_arabic_harakat_and_tatweel_do_not_cut_words() -> None:
    assert make_slug("مهرجان الربيع في عمّان") == "مهرجان-الربيع-في-عمان"  # shadda
    assert make_slug("كَتَبَ الطالبُ") == "كتب-الطالب"  # fatha, damma
    assert make_slug("مـــطر") == "مطر"  # tatweel


def test_length_and_empty() -> None:
    assert len(make_slug("word " * 100)) <= SLUG_MAX
    assert make_slug("!!! ---") == ""
