from __future__ import annotations

import math

import pytest

from actors.trend_keywords import (
    ARABIC_STOPWORDS,
    KeywordDoc,
    label,
    story_keywords,
    term_counts,
    terms,
)
from storage.languages import ARABIC_LETTER

# Three obvious English stories, written for this test.
ANALYTICA = [
    "Cambridge Analytica harvested the data of millions of Facebook users without consent.",
    "Facebook suspends Cambridge Analytica after the data scandal grows.",
    "Lawmakers question Facebook over Cambridge Analytica and user data.",
    "Whistleblower says Cambridge Analytica used Facebook profiles to target voters.",
    "Cambridge Analytica shuts down its offices.",
]
HURRICANE = [
    "Hurricane Irma makes landfall in Florida with winds of 130 mph.",
    "Millions in Florida lose power as Hurricane Irma moves north.",
    "Florida officials order evacuations ahead of the hurricane.",
    "The hurricane floods streets in Miami; evacuations continue across Florida.",
]
OLYMPICS = [
    "Norway tops the medal table at the Winter Olympics in Pyeongchang.",
    "Skiers from Norway win gold and silver in the Olympics downhill race.",
    "Pyeongchang Olympics: speed skating medal for the Netherlands.",
    "The Winter Olympics close in Pyeongchang with Norway on 39 medals.",
]

# Real sentences from SIB-200 (FLORES-200, CC BY-SA 4.0), ../shared/data/sib200_ar_en/arb_Arab/dev.tsv,
# category "sports" (ids 548, 1849, 812, 1846, 766, 768, 1150, 767, 1272, 1224, 331) and "health"
# (1094, 1095, 1110, 1096, 1181, 1577).
ARABIC_SPORTS = [
    "مع التغيير في مسافة السباق من ربع ميل إلى نصف ميل تُصبح السرعة أقل أهمية بكثير وتصبح القدرة على التحمل "
    "ضرورة مطلقة.",
    "يعود تاريخ التزلج على المنحدرات كرياضة إلى القرن السابع عشر على الأقل، وفي عام 1861 تم افتتاح أول نادي "
    "تزلج ترفيهي بواسطة النرويجيين في أستراليا.",
    "تشمل رياضة المشي لمسافات طويلة في النهار مسافات التي تقل عن ميلٍ واحدٍ وحتى المسافات أطول التي يمكن "
    "تغطيتها في يوم واحد.",
    "الرياضات الثلجية على المنحدرات، والتي تشمل التزلج والتزحلق على الجليد، هي من الرياضات الشعبية التي "
    "تنطوي على الانزلاق إلى أسفل التضاريس المغطاة بالثلوج بواسطة الزلاجات أو لوح التزلج المثبتة في قدميك.",
    "سوف تستضيف مدينة بكين في الصين الألعاب الأولمبية الشتوية في عام 2022، وهو ما يجعلها أول مدينة تستضيف "
    "كل من الألعاب الأولمبية الصيفية والشتوية.",
    'كما ستقام أحداث تزلج أخرى في منطقة "تايزيتشنغ" للتزلج في "زانغجياكو"، على بعد ما يقارب 220 كيلومتراً '
    "(140 ميلا) من بكين.",
    "استهلت دولة جنوب أفريقيا -مصنفة البطولة الأولى- المنافسة كما ينبغي بتحقيقها فوز سهل بنتيجة 26 - 00 "
    "على زامبيا المصنفة الخامسة في البطولة.",
    "تستضيف مدينة بكين مراسم الافتتاح والاختتام وفعاليات الجليد الداخلية.",
    "وشهد سباقها الآخر - سباق التزلج المتعرج العملاق - حصولها على المركز العاشر في مجموعة جلوس السيدات "
    "بوقت ركض مجموعه 4:41.30، وهو أبطأ بـ 2:11.60 دقيقة من صاحبة المركز الأول النمساوية كلوديا لوش.",
    "خسر موراي المجموعة الأولى في شوط كسر التعادل، بعد كسر كلا اللاعبين لجميع ضربات الإرسال بالمجموعة "
    "بالكامل.",
    "تم التصويت له في سنة 1995 كأفضل لاعب في تاريخ البارتيزان.",
]
ARABIC_HEALTH = [
    "اكتشفَ د. توني مول مرضَ السّل شديد المقاومةِ للأدويةِ أو ما بعرف ب (XDR-TB) في منطقةِ كوازولوناتال في "
    "جنوب إفريقيا.",
    'لقد قال في مقابلة أن شكل البكتيريا المتغير الجديد "مثير للقلق ومروّع للغاية بسبب معدل الوفيات المرتفع '
    'جداً."',
    "يتم نقل المرض من خلال الخنازير، والذي ينتقل بعد ذلك إلى البشر من خلال البعوض.",
    "يعتقد د. مول أن بعض المرضى من بينهم اثنين من العاملين بالمستشفى يحتمل أن يكونوا قد أصيبوا بالفيروس "
    "داخل المستشفى.",
    "تأكد إصابة بطة برية نافقة بسلالة إنفلونزا الطيور القاتلة للإنسان، H5N1، وقد عثر عليها يوم الاثنين، في "
    "مستنقعات بالقرب من ليون في شرق فرنسا.",
    "قد يكون أفضل مؤشر للتسمم الداخلي وجود حاوية مفتوحة للأدوية أو المواد الكيميائية المنزلية السامة.",
]
#: Arabic function words a keyword list must never show (written as in text, with hamza).
ARABIC_FUNCTION_WORDS = {
    "في",
    "من",
    "على",
    "إلى",
    "التي",
    "الذي",
    "عن",
    "أن",
    "مع",
    "هذا",
    "كما",
    "وهو",
}


def english(texts: list[str]) -> list[KeywordDoc]:
    return [KeywordDoc(text, "en") for text in texts]


def words_of(keywords: list[tuple[str, float]]) -> list[str]:
    return [keyword for keyword, _weight in keywords]


def test_three_english_stories_get_their_own_keywords_and_a_bigram_label() -> None:
    keywords = story_keywords({1: english(ANALYTICA), 2: english(HURRICANE), 3: english(OLYMPICS)}, top_n=5)

    assert label(keywords[1]).startswith("cambridge analytica")
    assert "cambridge" not in words_of(keywords[1]) and "analytica" not in words_of(keywords[1])
    assert {"facebook", "data"} <= set(words_of(keywords[1]))
    assert {"florida", "hurricane"} <= set(words_of(keywords[2]))
    assert {"winter olympics", "norway", "pyeongchang"} <= set(words_of(keywords[3]))
    # No keyword is shared between the stories, none is a stopword or a number.
    all_words = [word for story in keywords.values() for word in words_of(story)]
    assert len(all_words) == len(set(all_words)) == 15
    assert not {"the", "of", "in", "says", "130", "39"} & set(all_words)
    weights = [weight for story in keywords.values() for _word, weight in story]
    assert all(weight > 0 for weight in weights)
    assert all(story == sorted(story, key=lambda kw: -kw[1]) for story in keywords.values())


def test_weights_follow_the_c_tf_idf_formula() -> None:
    # Class 1: "apple banana" "apple"; class 2: "cherry". Terms: apple x2, banana, "apple banana", cherry.
    keywords = story_keywords(
        {1: english(["apple banana", "apple"]), 2: english(["cherry"])},
        top_n=10,
        min_bigram_docs=1,
        carry=2.0,
    )
    average = (4 + 1) / 2  # terms per class
    expected_1 = {
        "apple": 2 / 4 * math.log(1 + average / 2),
        "banana": 1 / 4 * math.log(1 + average / 1),
        "apple banana": 1 / 4 * math.log(1 + average / 1),
    }
    assert dict(keywords[1]) == pytest.approx(expected_1)
    assert dict(keywords[2]) == pytest.approx({"cherry": 1 / 1 * math.log(1 + average / 1)})


def test_background_counts_push_down_a_term_common_elsewhere() -> None:
    # Words apart (commas end pairs), so no bigram carries them.
    story = {1: english(["Markets, rates, bank.", "Rates, markets.", "Bank, markets, rates."])}
    alone = words_of(story_keywords(story)[1])
    elsewhere = term_counts(english(["The markets were calm.", "Markets fell.", "Markets closed mixed."] * 5))
    with_background = words_of(story_keywords(story, background=elsewhere)[1])

    assert alone.index("markets") < alone.index("rates")
    assert with_background.index("markets") > with_background.index("rates")


def test_a_bigram_needs_adjacent_kept_words_in_two_documents() -> None:
    found = [term.key for term in terms("Bank of America; London. Police arrived", "en")]
    assert "bank america" not in found  # a stopword between
    assert "london police" not in found  # a full stop between
    assert "police arrived" in found
    single = story_keywords({1: english(["Stormy Daniels sues Donald Trump"])})[1]
    assert all(" " not in word for word in words_of(single))  # one document gives no pairs


def test_a_bigram_that_does_not_carry_its_word_leaves_it_listed() -> None:
    docs = english(
        ["Trump speaks.", "Trump travels.", "Trump golfs.", "Donald Trump tweets.", "Donald Trump signs."]
    )
    found = words_of(story_keywords({1: docs, 2: english(["Unrelated weather news today."])})[1])
    assert "donald trump" in found and "trump" in found  # 2 of Trump's 5 mentions: not carried
    assert "donald" not in found  # both of Donald's: carried


def test_an_arabic_story_gets_arabic_content_words_not_stopwords() -> None:
    docs = {
        1: [KeywordDoc(text, None) for text in ARABIC_SPORTS],
        2: [KeywordDoc(text, "ar") for text in ARABIC_HEALTH],
    }
    keywords = story_keywords(docs, top_n=10)
    sports, health = words_of(keywords[1]), words_of(keywords[2])

    for word in sports + health:
        assert ARABIC_LETTER.search(word) or word.isascii(), word
        assert not set(word.split(" ")) & ARABIC_FUNCTION_WORDS, word
        assert not set(word.split(" ")) & ARABIC_STOPWORDS, word
    assert "التزلج" in sports  # skiing, written with its article as the text does
    assert "مدينة بكين" in sports  # Beijing city: carries "بكين"
    assert "المستشفى" in health or "مول" in health
    assert {w for w in sports if ARABIC_LETTER.search(w)} and len(sports) == 10


def test_arabic_forms_meet_on_one_key_and_show_the_most_frequent_form() -> None:
    docs = [
        KeywordDoc("أعلنت الحكومة خطة جديدة", "ar"),
        KeywordDoc("والحكومة تدرس الخطة", "ar"),
        KeywordDoc("رئيس الحكومة يتحدث", "ar"),
        KeywordDoc("حكومة جديدة", "ar"),
    ]
    found = dict(story_keywords({1: docs, 2: [KeywordDoc("مباراة كرة القدم", "ar")]})[1])
    assert "الحكومة" in found
    assert "والحكومة" not in found and "حكومة" not in found
    keys = {term.key for doc in docs for term in terms(doc.text, doc.language) if term.key.startswith("حكوم")}
    keys = {key for key in keys if " " not in key}
    assert keys == {"حكومه"}  # article off, teh marbuta folded


def test_arabic_clitic_stopwords_and_clitic_only_tokens_are_dropped() -> None:
    found = [term.key for term in terms("وفي هذا وبهذا وال ال و ب الْمَدْرَسَةُ الكبيرة", "ar")]
    assert found == ["مدرسه", "مدرسه كبيره", "كبيره"]  # harakat stripped, article off, folded


def test_a_mixed_story_reads_each_document_by_its_script_or_language() -> None:
    docs = [
        KeywordDoc("Cairo hosts the climate summit", None),
        KeywordDoc("Climate summit in Cairo opens", "en"),
        KeywordDoc("القاهرة تستضيف قمة المناخ", None),
        KeywordDoc("افتتاح قمة المناخ في القاهرة", "ar-EG"),
    ]
    found = words_of(story_keywords({1: docs, 2: english(["Football final tonight"])}, top_n=10)[1])
    assert "climate summit" in found and "cairo" in found
    assert "قمة المناخ" in found and "القاهرة" in found
    assert "the" not in found and "في" not in found


def test_label_skips_keywords_an_earlier_one_shows() -> None:
    keywords = [
        ("cambridge analytica", 0.9),
        ("analytica", 0.8),
        ("facebook", 0.7),
        ("data", 0.6),
        ("x", 0.1),
    ]
    assert label(keywords) == "cambridge analytica, facebook, data"
    assert label(keywords, n=1) == "cambridge analytica"
    assert label([]) == ""
    toyota = [
        ("toyota", 0.9),
        ("toyota recall", 0.8),
        ("recall vehicle", 0.7),
        ("nhtsa", 0.6),
        ("brakes", 0.5),
    ]
    assert label(toyota) == "toyota recall, nhtsa, brakes"
    assert label(toyota, n=1) == "toyota recall"


def test_empty_classes_and_bad_arguments() -> None:
    assert story_keywords({}) == {}
    assert story_keywords({4: [], 5: english(["12 34 a"])}) == {4: [], 5: []}
    with pytest.raises(ValueError, match="top_n"):
        story_keywords({1: english(["x"])}, top_n=0)
