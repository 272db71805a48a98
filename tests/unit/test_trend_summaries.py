"""Story summaries without a database or a server: extractive sentences, cache rules, the prompt budget."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from actors.prompts import PromptTemplate, cut_to_tokens, estimate_tokens
from actors.trend_summaries import (
    EXTRACTIVE_CHARS,
    PROMPT_FILE,
    BriefDoc,
    StoryBrief,
    SummaryConfig,
    arabic_share,
    day_start,
    extractive_summary,
    fingerprint,
    is_current,
    render_prompt,
    sanitize,
    sentences,
)
from cluster.ground.settings import SummarySettings
from storage.trend_summaries import SummaryRow

WHEN = datetime(2026, 12, 7, 10, 30, tzinfo=UTC)


def doc(title: str, text: str, language: str | None = "en") -> BriefDoc:
    return BriefDoc(title=title, text=text, language=language, published=WHEN)


def brief(docs: list[BriefDoc], *, size: int = 10, language: str = "en", keywords=None) -> StoryBrief:
    keywords = keywords or [("flood", 0.9), ("river", 0.8), ("rescue", 0.7), ("rain", 0.6), ("valley", 0.5)]
    return StoryBrief(story_id=7, size=size, keywords=keywords, documents=docs, language=language)


FLOOD = [
    doc(
        "River bursts its banks",
        "The river Severn burst its banks on Monday after three days of rain. Hundreds of homes were "
        "evacuated. The army was called in.",
    ),
    doc(
        "Rescue teams reach valley",
        "Rescue teams reached the cut-off valley villages by boat on Tuesday morning. Power is still out.",
    ),
    doc(  # a wire copy of the first: its first sentence is a duplicate
        "Severn floods (wire)",
        "The river Severn burst its banks on Monday after three days of rain! More rain is forecast.",
    ),
    doc("Forecasters warn of more rain", "Forecasters expect another 40 mm of rain by Thursday night."),
    doc("Crue de la rivière", "La rivière a débordé lundi après trois jours de pluie.", language="fr"),
]

ARABIC = [
    doc(
        "فيضان النهر",
        "فاض النهر يوم الاثنين بعد ثلاثة أيام من الأمطار الغزيرة، وأُجلي مئات السكان. "
        "The army was deployed to help. هل ستتوقف الأمطار قريبا؟ يقول الخبراء إنها ستستمر.",
        language="ar",
    ),
    doc("Flood reaches the valley", "Rescue teams reached the valley villages by boat.", language="en"),
    doc(
        "فرق الإنقاذ تصل",
        "The Red Crescent said on Tuesday that teams had arrived. "
        "وصلت فرق الإنقاذ إلى القرى المعزولة بالقوارب.",
        language="ar",
    ),
    doc("انقطاع الكهرباء", "لا تزال الكهرباء مقطوعة في الوادي، والمدارس مغلقة.", language="ar"),
]


def config(**overrides: object) -> SummaryConfig:
    """As a caller builds it: from the settings, the key revealed."""
    values = SummarySettings().model_dump()
    values["api_key"] = None
    values.update(overrides)
    return SummaryConfig(**values)


def cached_row(
    b: StoryBrief, *, method="llm", model="m", version="story_summary.v1", size=None
) -> SummaryRow:
    return SummaryRow(
        id=1,
        story_id=b.story_id,
        fingerprint=fingerprint(b, method=method, model=model, prompt_version=version),
        method=method,
        summary="cached",
        story_size=b.size if size is None else size,
        keywords=b.top_keywords(10),
        created_at=WHEN,
        model=model,
        prompt_version=version,
    )


# ------------------------------------------------------------------------------------------ extractive


def test_extractive_takes_first_sentences_of_the_most_representative_documents() -> None:
    summary = extractive_summary(brief(FLOOD))
    assert summary == (
        "The river Severn burst its banks on Monday after three days of rain. "
        "Rescue teams reached the cut-off valley villages by boat on Tuesday morning. "
        "Forecasters expect another 40 mm of rain by Thursday night."
    )  # the wire copy's duplicate first sentence and the French document are skipped
    assert len(summary) <= EXTRACTIVE_CHARS


def test_extractive_with_one_document_takes_its_first_two_sentences() -> None:
    summary = extractive_summary(brief(FLOOD[:1]))
    assert summary == (
        "The river Severn burst its banks on Monday after three days of rain. "
        "Hundreds of homes were evacuated."
    )


def test_extractive_keeps_under_the_length_limit() -> None:
    long_docs = [
        doc(f"t{i}", ("word " * 60).strip() + f" number {i}. Short second one here.") for i in range(5)
    ]
    summary = extractive_summary(brief(long_docs))
    assert len(summary) <= EXTRACTIVE_CHARS
    assert summary.count("number") == 1  # the next ~300-character sentence would pass the limit
    lone = extractive_summary(brief([doc("t", "word " * 200)]))  # one sentence longer than the limit
    assert len(lone) <= EXTRACTIVE_CHARS and lone.endswith("…")


def test_arabic_story_gets_arabic_sentences() -> None:
    summary = extractive_summary(brief(ARABIC, language="ar", keywords=[("فيضان", 1.0)]))
    assert summary == (
        "فاض النهر يوم الاثنين بعد ثلاثة أيام من الأمطار الغزيرة، وأُجلي مئات السكان. "
        "وصلت فرق الإنقاذ إلى القرى المعزولة بالقوارب. "
        "لا تزال الكهرباء مقطوعة في الوادي، والمدارس مغلقة."
    )
    assert "army" not in summary and "Rescue" not in summary and "Red Crescent" not in summary


def test_sentences_split_on_arabic_question_mark_not_on_arabic_comma() -> None:
    parts = sentences("هل ستتوقف الأمطار قريبا؟ يقول الخبراء، في بيان رسمي، إنها ستستمر. وماذا بعد")
    assert parts == ["هل ستتوقف الأمطار قريبا؟", "يقول الخبراء، في بيان رسمي، إنها ستستمر.", "وماذا بعد"]


def test_sentences_keep_short_fragments_with_the_next_one() -> None:
    assert sentences(
        "The U.S. Senate voted. Then it adjourned for the week.\nNew paragraph starts here."
    ) == [
        "The U.S. Senate voted.",
        "Then it adjourned for the week.",
        "New paragraph starts here.",
    ]
    assert arabic_share("فيضان flood") == 0.5  # five Arabic letters of ten
    assert arabic_share("فيضان النهر flood") == pytest.approx(10 / 15)


def test_extractive_without_text_uses_titles_then_keywords() -> None:
    assert extractive_summary(brief([doc("River bursts its banks in the valley", "")])) == (
        "River bursts its banks in the valley"
    )
    assert extractive_summary(brief([])) == "flood, river, rescue, rain, valley"


# ------------------------------------------------------------------------------------------ cache rules


def test_fingerprint_covers_keywords_titles_model_and_prompt_not_size() -> None:
    base = brief(FLOOD)
    key = fingerprint(base, method="llm", model="m", prompt_version="story_summary.v1")
    assert key == fingerprint(
        dataclasses.replace(base, size=99), method="llm", model="m", prompt_version="story_summary.v1"
    )
    reordered = dataclasses.replace(base, keywords=[("river", 0.95), *base.keywords[1:]])
    retitled = dataclasses.replace(base, documents=[FLOOD[1], FLOOD[0], *FLOOD[2:]])
    others = {
        fingerprint(reordered, method="llm", model="m", prompt_version="story_summary.v1"),
        fingerprint(retitled, method="llm", model="m", prompt_version="story_summary.v1"),
        fingerprint(base, method="llm", model="other", prompt_version="story_summary.v1"),
        fingerprint(base, method="llm", model="m", prompt_version="story_summary.v2"),
        fingerprint(base, method="extractive", model="m", prompt_version="story_summary.v1"),
    }
    assert key not in others and len(others) == 5


def test_material_change_rules() -> None:
    old = brief(FLOOD, size=20)
    cached = cached_row(old)

    def current(new: StoryBrief, *, method="llm", model="m", version="story_summary.v1") -> bool:
        print_ = fingerprint(new, method=method, model=model, prompt_version=version)
        return is_current(
            cached,
            new,
            fingerprint=print_,
            method=method,
            model=model,
            prompt_version=version,
            material_change=0.25,
        )

    assert current(old)  # same fingerprint and size
    assert current(dataclasses.replace(old, size=24))  # same fingerprint, grew by 20%
    assert not current(dataclasses.replace(old, size=25))  # same fingerprint, but grew by 25%: material
    # New representatives (another fingerprint): kept while the size moved less than 25% and the top-5
    # keywords are the same set (their order may change).
    shuffled = [
        ("valley", 0.95),
        ("rain", 0.9),
        ("rescue", 0.7),
        ("river", 0.6),
        ("flood", 0.5),
        ("boat", 0.4),
    ]
    moved = dataclasses.replace(old, documents=FLOOD[1:], keywords=shuffled)
    assert current(dataclasses.replace(moved, size=24))
    assert current(dataclasses.replace(moved, size=16))
    assert not current(dataclasses.replace(moved, size=25))  # grew by 25%: material
    assert not current(dataclasses.replace(moved, size=15))  # shrank by 25%: material
    new_top = [*shuffled[:4], ("dam", 0.55)]
    assert not current(dataclasses.replace(moved, size=21, keywords=new_top))
    # Another method, model or prompt never reuses the cached summary.
    assert not current(dataclasses.replace(moved, size=21), model="other")
    assert not current(dataclasses.replace(moved, size=21), version="story_summary.v2")
    assert not current(old, method="extractive", model="", version="")

    # material_change 0: any change of size is material, an unchanged story still keeps its summary.
    def strict(new: StoryBrief) -> bool:
        print_ = fingerprint(new, method="llm", model="m", prompt_version="story_summary.v1")
        return is_current(
            cached,
            new,
            fingerprint=print_,
            method="llm",
            model="m",
            prompt_version="story_summary.v1",
            material_change=0.0,
        )

    assert strict(old) and strict(dataclasses.replace(moved, size=20))
    assert not strict(dataclasses.replace(old, size=21))


# ------------------------------------------------------------------------------------------ prompt


def test_prompt_file_is_versioned_and_fully_substituted() -> None:
    template = PromptTemplate.load(PROMPT_FILE)
    assert template.version == "story_summary.v1"
    prompt = render_prompt(template, brief(FLOOD), max_tokens=1500)
    assert "$" not in prompt.system + prompt.user
    assert '"en"' in prompt.system and "Top keywords: flood, river, rescue, rain, valley" in prompt.user
    assert prompt.items == len(FLOOD)
    assert prompt.user.index("[1] River bursts its banks (2026-12-07)") < prompt.user.index(
        "[2] Rescue teams"
    )
    assert "Story summary prompt" not in prompt.system  # the maintainers' note is not sent


def test_token_budget_cuts_the_prompt() -> None:
    template = PromptTemplate.load(PROMPT_FILE)
    long_docs = [doc(f"Report {i} on the flood", "The water rose again. " * 200) for i in range(6)]
    wide = render_prompt(template, brief(long_docs), max_tokens=4000)
    narrow = render_prompt(template, brief(long_docs), max_tokens=250)
    assert wide.tokens <= 4000 and narrow.tokens <= 250
    assert estimate_tokens(narrow.system) + estimate_tokens(narrow.user) <= 250
    assert "[1] Report 0 on the flood" in narrow.user and "Summary:" in narrow.user  # cut inside, not after
    assert 0 < narrow.items < wide.items == 6
    assert render_prompt(template, brief(long_docs), max_tokens=150).items == 0  # no room for one document


def test_token_estimates_count_non_latin_text_denser() -> None:
    assert estimate_tokens("a" * 400) == 100
    assert estimate_tokens("ب" * 400) == 200
    cut = cut_to_tokens("one two three four five six seven eight", 5)
    assert cut == "one two three four" and estimate_tokens(cut) <= 5
    assert cut_to_tokens("short", 5) == "short"


# ------------------------------------------------------------------------------------------ values


def test_answers_are_sanitised() -> None:
    assert sanitize('  Summary:  "The river   burst\n its banks."  ') == "The river burst its banks."
    long = sanitize("word " * 400)
    assert len(long) <= 1000 and long.endswith("…")
    assert sanitize(" \n ") == ""


def test_config_has_the_settings_fields_and_prices_calls() -> None:
    assert [f.name for f in dataclasses.fields(SummaryConfig)] == list(SummarySettings.model_fields)
    cfg = config(input_price_per_mtok=0.15, output_price_per_mtok=0.60)
    assert cfg.cost(1_000_000, 0) == pytest.approx(0.15)
    assert cfg.cost(2_000, 100) == pytest.approx(0.0003 + 0.00006)
    assert not cfg.uses_llm
    assert config(base_url="http://127.0.0.1:9/v1").uses_llm and config(api_key="sk-test").uses_llm


def test_cost_cap_day_is_the_utc_day() -> None:
    late = datetime.fromisoformat("2026-12-07T23:30:00-05:00")  # 04:30 UTC on the 8th
    assert day_start(late) == datetime(2026, 12, 8, tzinfo=UTC)
    assert day_start(WHEN) == datetime(2026, 12, 7, tzinfo=UTC)
