from __future__ import annotations

import threading

import numpy as np
import pytest

from actors.keyword_index import KeywordIndex, analysis_key, analyze, index_terms, query_keys

# Real sentences from SIB-200 (FLORES-200, CC BY-SA 4.0), /work/shared/data/sib200_ar_en/arb_Arab/dev.tsv.
ARABIC = {
    824: "ألقِ نظرة على الرحلات التي يقوم الوكيل بترويجها، سواءً كان ذلك على موقع إلكتروني أو في نافذة متجر.",
    1628: "يبلغ عدد سكان مدينة الفاتيكان حوالي ٨٠٠. وهي أصغر دولة مستقلة في العالم وأقل تعدادٍ سكانيِّ.",
    1849: (
        "يعود تاريخ التزلج على المنحدرات كرياضة إلى القرن السابع عشر على الأقل، وفي عام 1861 تم افتتاح "
        "أول نادي تزلج ترفيهي بواسطة النرويجيين في أستراليا."
    ),
}
ENGLISH = {
    1: "The runner keeps running every morning along the river.",
    2: "A quiet library with old books and maps.",
    3: "Markets fell sharply after the announcement.",
}


def manual() -> KeywordIndex:
    """An index that rebuilds only when told to (no rebuild inside search)."""
    return KeywordIndex(refresh_on_search_max=0)


def filled(docs: dict[int, str], language: str | None = "en") -> KeywordIndex:
    index = manual()
    index.upsert(list(docs), list(docs.values()), [language] * len(docs))
    assert index.refresh()
    return index


def test_english_stemming_finds_running_by_runs() -> None:
    index = filled(ENGLISH)
    assert index.search("runs", 10).ids == [[1]]
    assert index.search("RUNNING!", 10).ids == [[1]]


def test_english_stopwords_are_not_terms() -> None:
    assert analyze("The runs of the river", "en") == ["run", "river"]
    assert analyze("The runs", None) == ["the", "runs"]  # unknown language: lowercased only


def test_arabic_query_finds_another_form_of_the_word() -> None:
    index = filled(ARABIC, "ar")
    # "رحلة" (a trip) is not in sentence 824, "الرحلات" (the trips) is: they share the stem.
    assert "رحلة" not in ARABIC[824]
    assert index.search("رحلة", 10).ids == [[824]]
    assert index.search("للتزلج", 10).ids == [[1849]]  # "for skiing" finds "التزلج" / "تزلج"
    assert index.search("مدينة كبيرة", 10).ids[0][0] == 1628
    # Without the Arabic stemmer the query's surface form matches nothing.
    assert index.search("رحلة", 10, languages=["fr"]).ids == [[]]


def test_a_query_is_read_in_every_analysis_a_document_could_have() -> None:
    assert query_keys("رحلة إلى روما") == ["ar", "xx"]
    assert query_keys("trip to Rome") == ["en", "xx"]
    assert query_keys("GPT رحلة إلى روما") == ["ar", "xx"]
    assert query_keys("2018") == ["en", "ar", "xx"]  # no letters: every analysis
    assert query_keys("trip", ["fr", "de"]) == ["xx"]  # a lang filter names the analyses
    assert query_keys("trip", ["en-GB", "ar"]) == ["en", "ar"]


def test_a_document_without_a_language_is_analysed_by_its_script_as_queries_are() -> None:
    assert analysis_key(None, "Stormy Daniels") == "en" and analysis_key(None, "تركيا") == "ar"
    assert analysis_key("fr", "Le chat") == "xx" and analysis_key("en-GB", "") == "en"
    assert index_terms("The runs", None) == ["en:run"]
    index = filled(ENGLISH, None)
    assert index.search("runs", 10).ids == [[1]]
    arabic = filled(ARABIC, None)
    assert arabic.search("رحلة", 10).ids == [[824]]


def test_stems_and_plain_words_each_find_their_own_documents() -> None:
    index = manual()
    index.upsert(
        [1, 2, 3],
        ["Stormy Daniels sues the president", "Stormi Webster is Kylie's daughter", "Daniels a parlé hier"],
        ["en", "en", "fr"],
    )
    index.refresh()
    # English stems: "stormy" and "stormi" are one stem, so document 2 matches on it; plain French words
    # match document 3 by the exact word.
    hits = index.search("stormy daniels", 10)
    assert hits.ids[0][0] == 1 and set(hits.ids[0]) == {1, 2, 3}
    assert index.search("stormy daniels", 10, languages=["fr"]).ids == [[3]]
    # Normalised, each analysis is divided by its own bound (terms no document of it has are left out):
    # the English document with both stems and the French one with the only plain word any document has
    # both score 1; one summed bound would have put the French document at a fraction.
    normalised = index.search("daniels sues", 10, normalize=True)
    top = dict(zip(normalised.ids[0], normalised.scores[0], strict=True))
    assert top[1] == pytest.approx(1.0) and top[3] == pytest.approx(1.0)
    assert 2 not in top


def test_diacritics_do_not_split_arabic_words() -> None:
    assert analyze("سكانيِّ", "ar") == analyze("سكاني", "ar")


def test_delete_hides_a_document_before_refresh() -> None:
    index = filled(ENGLISH)
    index.delete([1])
    assert index.search("running", 10).ids == [[]]
    assert index.size == 2
    assert index.refresh()
    assert index.search("running", 10).ids == [[]]
    assert index.size == 2


def test_upsert_replaces_text_old_text_hidden_at_once_new_text_at_refresh() -> None:
    index = filled(ENGLISH)
    index.upsert([2], ["Cats sleep all afternoon."], ["en"])
    assert index.search("library", 10).ids == [[]]  # the old text is gone at once
    assert index.search("cats", 10).ids == [[]]  # the new text waits for the rebuild
    assert index.refresh()
    assert index.search("cat", 10).ids == [[2]]
    assert index.search("library", 10).ids == [[]]


def test_small_index_reads_its_own_writes() -> None:
    index = KeywordIndex()  # default: small corpora rebuild inside search when changes are pending
    index.upsert([7], ["fresh news about volcanoes"], ["en"])
    assert index.search("volcano", 5).ids == [[7]]
    assert index.refresh() is False  # nothing left to rebuild


def test_upsert_of_unchanged_text_keeps_the_document_searchable() -> None:
    index = filled(ENGLISH)
    index.upsert([1], [ENGLISH[1]], ["en"])
    assert index.pending == 0
    assert index.search("runs", 10).ids == [[1]]


def test_rebuild_after_pending_changes() -> None:
    index = KeywordIndex(rebuild_after=2, refresh_on_search_max=0)
    index.upsert([1], ["alpha"], ["en"])
    assert index.size == 0
    index.upsert([2], ["beta"], ["en"])
    assert index.size == 2
    assert index.pending == 0


def test_filter_applies_to_every_match_not_a_top_k() -> None:
    # Document i says "apple" 50 - i times: the best documents have the smallest ids.
    ids = list(range(50))
    index = filled({i: " ".join(["apple"] * (50 - i) + ["pear"] * i) for i in ids})
    allowed = set(range(40, 50))

    def only_allowed(candidates: np.ndarray) -> np.ndarray:
        assert candidates.dtype == np.int64
        return np.isin(candidates, list(allowed))

    hits = index.search("apple", 5, doc_filter=only_allowed)
    assert hits.ids == [[40, 41, 42, 43, 44]]
    assert hits.scores[0] == sorted(hits.scores[0], reverse=True)
    assert index.search("apple", 20, doc_filter=only_allowed).ids[0] == sorted(allowed)


def test_filter_with_a_wrong_mask_shape_is_refused() -> None:
    index = filled(ENGLISH)
    with pytest.raises(ValueError, match="one bool per id"):
        index.search("runs", 5, doc_filter=lambda ids: np.ones(len(ids) + 1, dtype=bool))


def test_ties_rank_the_smaller_id_first_and_k_cuts() -> None:
    index = filled({i: "same words here" for i in (9, 3, 5, 1)})
    assert index.search("words", 3).ids == [[1, 3, 5]]


@pytest.mark.parametrize("query", ["", "   ", "the of and", "!!!", "a"])
def test_empty_and_stopword_queries_return_no_hits(query: str) -> None:
    assert filled(ENGLISH).search(query, 10).ids == [[]]


def test_empty_index_and_unknown_terms_return_no_hits() -> None:
    assert KeywordIndex().search("anything", 10).ids == [[]]
    assert KeywordIndex().size == 0
    assert filled(ENGLISH).search("zeppelin", 10).ids == [[]]
    assert filled(ENGLISH).search("runs", 0).ids == [[]]


def test_documents_without_terms_are_indexed_but_never_found() -> None:
    index = filled({1: "the", 2: "", 3: "river"})
    assert index.size == 3
    assert index.search("river", 10).ids == [[3]]
    only_empty = filled({1: "the", 2: ""})
    assert only_empty.search("river", 10).ids == [[]]


def test_mismatched_upsert_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="one text and one language per id"):
        KeywordIndex().upsert([1, 2], ["a"], ["en", "en"])


def test_searches_during_rebuilds_never_fail_nor_see_deleted_documents() -> None:
    base = {i: f"common word{i} topic{i % 7}" for i in range(300)}
    index = filled(base)
    stop = threading.Event()
    errors: list[BaseException] = []
    deleted: set[int] = set()  # grows only; read by searchers after the delete returned

    def searcher() -> None:
        try:
            while not stop.is_set():
                gone = set(deleted)  # snapshot before searching: these must never come back
                hits = index.search("common", 1000).ids[0]
                assert not gone.intersection(hits)
                assert len(hits) == len(set(hits))
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for round_ in range(20):
            victims = [round_ * 10 + j for j in range(10)]
            index.delete(victims)
            deleted.update(victims)
            new = [1000 + round_ * 5 + j for j in range(5)]
            index.upsert(new, [f"common fresh{n}" for n in new], ["en"] * len(new))
            assert index.refresh()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    hits = index.search("common", 1000).ids[0]
    assert len(hits) == 300 - 200 + 100
    assert not deleted.intersection(hits)


def test_a_repeated_query_term_counts_once() -> None:
    index = filled(ENGLISH)
    assert index.search("runs runs running", 5).scores == index.search("runs", 5).scores


def test_normalised_scores_are_bm25_over_the_query_upper_bound() -> None:
    index = filled({1: "alpha beta", 2: "alpha alpha gamma delta", 3: "beta"})
    raw = index.search("alpha beta", 10)
    norm = index.search("alpha beta", 10, normalize=True)
    assert norm.ids == raw.ids
    assert all(0 < s <= 1 for s in norm.scores[0])
    ratios = [n / r for n, r in zip(norm.scores[0], raw.scores[0], strict=True)]
    assert ratios == pytest.approx([ratios[0]] * len(ratios))  # one divisor per query
    # Document 1 has the best "beta" score but not the best "alpha" one: below the bound.
    assert max(norm.scores[0]) < 1
    single = filled({1: "alpha"})
    assert single.search("alpha", 1, normalize=True).scores == [[pytest.approx(1.0)]]


def test_ids_are_the_searchable_documents_each_once() -> None:
    index = filled(ENGLISH)
    assert sorted(index.ids().tolist()) == [1, 2, 3]
    index.upsert([2], ["A quiet library, rebuilt."], ["en"])  # hidden until the next build
    index.delete([3])
    assert sorted(index.ids().tolist()) == [1]
    assert index.refresh()
    assert sorted(index.ids().tolist()) == [1, 2]
