"""Search result snippets (serve_apps.search.snippets): the densest passage, word boundaries, ellipses."""

from __future__ import annotations

from serve_apps.search.snippets import WIDTH, query_words, snippet

FILLER = "The council met on Tuesday to discuss the budget for the coming year. " * 8


def test_query_words_are_distinct_lowercase_and_any_script() -> None:
    assert query_words("Gun  violence, GUN march a") == ["gun", "violence", "march"]
    assert query_words("مهرجان الربيع") == ["مهرجان", "الربيع"]


def test_short_text_is_whole_and_empty_text_has_none() -> None:
    assert snippet("Students march\n in  Florida.", "march") == "Students march in Florida."
    assert snippet("  ", "march") is None


def test_the_window_with_most_query_words_wins_and_is_cut_at_words() -> None:
    text = FILLER + "Students marched against gun violence in Washington on Saturday. " + FILLER
    out = snippet(text, "students march gun violence")
    assert out is not None and "Students marched against gun violence" in out
    assert out.startswith("…") and out.endswith("…")
    assert len(out) <= WIDTH + 2
    body = out.strip("…")
    assert text.find(body) >= 0  # a contiguous passage
    assert text[text.find(body) - 1] == " " and text[text.find(body) + len(body)] == " "  # whole words


def test_no_query_word_gives_the_beginning() -> None:
    out = snippet(FILLER, "zebra")
    assert out is not None and out.startswith("The council met") and out.endswith("…")


def test_arabic_text() -> None:
    text = "افتتح اليوم " * 30 + "مهرجان الربيع في عمّان بمشاركة فنانين من المنطقة. " + "وقال المنظمون " * 30
    out = snippet(text, "مهرجان الربيع")
    assert out is not None and "مهرجان الربيع في عمّان" in out
