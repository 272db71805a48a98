"""Story summaries: an LLM through the ``openai`` client when one is configured, extractive otherwise,
cached in PostgreSQL (``storage.trend_summaries``) and regenerated only when a story changed materially.

``StorySummarizer`` is a plain class (no Ray): it takes a ``SummaryConfig`` (plain values the caller
builds from ``SummarySettings``), a session factory, a client factory and a clock. ``summarize(brief)``:

1. reads the story's cached summary; keeps it when nothing changed materially (``is_current``);
2. with an API configured (``base_url`` or ``api_key``): renders the versioned prompt
   (``actors/prompts/story_summary.v1.md``) cut to ``max_input_tokens``, refuses when today's spend (UTC
   day) plus this call's worst case would pass ``daily_cost_cap_usd``, calls
   ``chat.completions.create`` on any OpenAI-compatible server (OpenAI, vLLM, llama.cpp...), prices the
   answer by the ``usage`` the server returns and stores it;
3. otherwise, and whenever the LLM path is refused or fails (logged with the story id; a failure is never
   stored as an LLM summary): an extractive summary, 2-3 first sentences of the most representative
   documents in the story's language.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import openai
from sqlalchemy.orm import Session, sessionmaker

from actors.prompts import Prompt, PromptTemplate, estimate_tokens
from storage.database import session_scope
from storage.trend_summaries import (
    NewSummary,
    SummaryMethod,
    SummaryRow,
    latest_summary,
    save_summary,
    spent_since,
)

logger = logging.getLogger(__name__)

#: The prompt template (package ``actors.prompts``); its version is its name without the suffix.
PROMPT_FILE = "story_summary.v1.md"
#: Retries of the openai client on connection errors, 408/409/429 and 5xx (backoff, Retry-After honoured).
MAX_RETRIES = 2
#: API key sent when only ``base_url`` is set: local servers take any key, the client insists on one.
KEYLESS = "no-key"
#: Keywords and representative titles a fingerprint covers.
FINGERPRINT_KEYWORDS = 10
FINGERPRINT_TITLES = 5
#: Top keywords that must stay the same set for a grown story to keep its summary.
MATERIAL_KEYWORDS = 5
#: Documents a prompt shows at most.
PROMPT_DOCUMENTS = 8
#: Extractive summaries: sentences and characters at most, and the shortest fragment kept as a sentence.
EXTRACTIVE_SENTENCES = 3
EXTRACTIVE_CHARS = 400
MIN_SENTENCE_CHARS = 20
#: Longest stored summary (an LLM answer is cut there).
MAX_SUMMARY_CHARS = 1000
#: Languages written in Arabic script: their summaries take only sentences written mostly in it.
ARABIC_SCRIPT = frozenset({"ar", "fa", "ur", "ps", "ckb", "sd", "ug"})
#: Sentence ends: . ! ? … and the Arabic question mark ؟, the Urdu full stop (U+06D4) and the CJK full stop 。
#: before a space, or a line break. The Arabic comma ، and semicolon ؛ end no sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?…؟\u06d4。])\s+|\s*\n\s*")
_ANSWER_PREFIX = re.compile(r"^(summary|résumé|resumen|ملخص)\s*:\s*", re.IGNORECASE)


@dataclass(frozen=True)
class SummaryConfig:
    """``SummarySettings`` as plain values (``api_key`` revealed); built by the caller."""

    base_url: str | None
    api_key: str | None
    model: str
    max_input_tokens: int
    max_output_tokens: int
    daily_cost_cap_usd: float
    input_price_per_mtok: float
    output_price_per_mtok: float
    timeout_s: float
    material_change: float

    @property
    def uses_llm(self) -> bool:
        """An API is configured (a server, a key, or both)."""
        return bool(self.base_url or self.api_key)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD of a call with these token counts."""
        return (
            input_tokens * self.input_price_per_mtok + output_tokens * self.output_price_per_mtok
        ) / 1_000_000


@dataclass(frozen=True)
class BriefDoc:
    """One document of a story, as a summary reads it."""

    title: str
    text: str
    language: str | None
    published: datetime | None


@dataclass(frozen=True)
class StoryBrief:
    """What a summary is written from: documents ordered most representative first."""

    story_id: int
    size: int
    keywords: Sequence[tuple[str, float]]  # (word, weight)
    documents: Sequence[BriefDoc]
    language: str | None

    def top_keywords(self, n: int) -> tuple[str, ...]:
        """The ``n`` strongest keywords (ties keep their order)."""
        ranked = sorted(self.keywords, key=lambda kw: -kw[1])
        return tuple(word for word, _ in ranked[:n])


def one_line(text: str) -> str:
    return " ".join(text.split())


def render_prompt(template: PromptTemplate, brief: StoryBrief, *, max_tokens: int) -> Prompt:
    """The summary prompt of ``brief``: its most representative documents (title, date, text) cut to fit
    ``max_tokens``."""
    values = {
        "language": brief.language or "en",
        "size": str(brief.size),
        "keywords": ", ".join(brief.top_keywords(FINGERPRINT_KEYWORDS)),
    }
    shown = [d for d in brief.documents if d.title.strip() or d.text.strip()][:PROMPT_DOCUMENTS]
    items = [
        f"[{n}] {one_line(d.title)}{f' ({d.published.date().isoformat()})' if d.published else ''}\n"
        f"{one_line(d.text)}"
        for n, d in enumerate(shown, start=1)
    ]
    return template.render(values, slot="documents", items=items, max_tokens=max_tokens)


# ---------------------------------------------------------------------------------------------- cache rules


def fingerprint(brief: StoryBrief, *, method: SummaryMethod, model: str, prompt_version: str) -> str:
    """What a summary was written from: method, model, prompt version, top keywords (in order) and the
    most representative titles. Story size is left out (``is_current`` weighs it apart)."""
    payload = {
        "method": method,
        "model": model,
        "prompt": prompt_version,
        "keywords": brief.top_keywords(FINGERPRINT_KEYWORDS),
        "titles": [one_line(d.title) for d in brief.documents[:FINGERPRINT_TITLES]],
    }
    blob = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def is_current(
    cached: SummaryRow,
    brief: StoryBrief,
    *,
    fingerprint: str,
    method: SummaryMethod,
    model: str,
    prompt_version: str,
    material_change: float,
) -> bool:
    """Whether ``cached`` still stands for ``brief``: nothing changed (same fingerprint and size), or it
    was written the same way (method, model, prompt), the story's size moved (grew or shrank) by less than
    ``material_change`` of the cached size and its top keywords are the same set (new representatives or
    reordered keywords alone change nothing)."""
    if cached.fingerprint == fingerprint and cached.story_size == brief.size:
        return True
    if (cached.method, cached.model, cached.prompt_version) != (method, model, prompt_version):
        return False
    moved = abs(brief.size - cached.story_size)
    if moved and moved >= material_change * max(cached.story_size, 1):
        return False
    return set(cached.keywords[:MATERIAL_KEYWORDS]) == set(brief.top_keywords(MATERIAL_KEYWORDS))


# ---------------------------------------------------------------------------------------------- text


def sentences(text: str) -> list[str]:
    """``text`` split into sentences (see ``_SENTENCE_END``); fragments shorter than
    ``MIN_SENTENCE_CHARS`` ("U.S.", "Dr.") join the next one."""
    out: list[str] = []
    pending = ""
    for piece in _SENTENCE_END.split(text.strip()):
        piece = one_line(piece)
        if not piece:
            continue
        pending = f"{pending} {piece}" if pending else piece
        if len(pending) >= MIN_SENTENCE_CHARS:
            out.append(pending)
            pending = ""
    if pending:
        out.append(pending)
    return out


def arabic_share(text: str) -> float:
    """Share of the letters of ``text`` that are Arabic-script letters."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for ch in letters if unicodedata.name(ch, "").startswith("ARABIC")) / len(letters)


def in_script_of(sentence: str, language: str | None) -> bool:
    """Whether ``sentence`` is written in the script of ``language`` (Arabic script or not)."""
    return (arabic_share(sentence) >= 0.5) == (language in ARABIC_SCRIPT)


def _key(sentence: str) -> str:
    return "".join(ch for ch in sentence.casefold() if ch.isalnum())


def extractive_summary(brief: StoryBrief) -> str:
    """2-3 sentences in the story's language: the first sentence of each representative document (most
    representative first), then their second ones, skipping duplicates and documents in another language,
    at most ``EXTRACTIVE_CHARS`` characters. Titles stand in for documents without text; keywords for a
    story without either."""
    docs = [
        d for d in brief.documents if not (brief.language and d.language and d.language != brief.language)
    ]
    candidates = [[s for s in sentences(d.text or d.title) if in_script_of(s, brief.language)] for d in docs]
    chosen: list[str] = []
    seen: set[str] = set()
    used = 0
    for depth in range(EXTRACTIVE_SENTENCES):
        for doc_sentences in candidates:
            if len(chosen) == EXTRACTIVE_SENTENCES:
                break
            if depth >= len(doc_sentences) or _key(doc_sentences[depth]) in seen:
                continue
            sentence = doc_sentences[depth]
            cost = len(sentence) + (1 if chosen else 0)  # 1: the joining space
            if used + cost > EXTRACTIVE_CHARS:
                continue
            chosen.append(sentence)
            seen.add(_key(sentence))
            used += cost
        if len(chosen) >= 2:
            break
    if chosen:
        return " ".join(chosen)
    first = next((s for c in candidates for s in c), "")
    if first:
        return shorten(first, EXTRACTIVE_CHARS)
    return ", ".join(brief.top_keywords(MATERIAL_KEYWORDS))


def shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, marked with "…" when cut."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    return (head[:space] if space > limit // 2 else head).rstrip(" ,،;:") + "…"


def sanitize(answer: str, *, limit: int = MAX_SUMMARY_CHARS) -> str:
    """An LLM answer as stored: whitespace collapsed, a leading "Summary:" and wrapping quotes dropped,
    cut to ``limit`` characters."""
    text = _ANSWER_PREFIX.sub("", one_line(answer))
    if len(text) > 1 and text[0] in "\"'“«" and text[-1] in "\"'”»":
        text = text[1:-1].strip()
    return shorten(text, limit)


# ---------------------------------------------------------------------------------------------- summarizer


ClientFactory = Callable[[SummaryConfig], openai.OpenAI]


def openai_client(config: SummaryConfig) -> openai.OpenAI:
    """The production client: any OpenAI-compatible ``base_url`` (None: OpenAI's own API)."""
    return openai.OpenAI(
        base_url=config.base_url,
        api_key=config.api_key or KEYLESS,
        timeout=config.timeout_s,
        max_retries=MAX_RETRIES,
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


def day_start(moment: datetime) -> datetime:
    """Midnight UTC of ``moment``'s UTC day (the cost cap's period)."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class _Answer:
    text: str
    input_tokens: int
    output_tokens: int


class StorySummarizer:
    """Writes and caches story summaries (module docstring). Not thread-safe: one caller at a time."""

    def __init__(
        self,
        config: SummaryConfig,
        *,
        sessions: sessionmaker[Session],
        client_factory: ClientFactory | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._config = config
        self._sessions = sessions
        self._client_factory = client_factory or openai_client
        self._client: openai.OpenAI | None = None
        self._clock = clock
        self._template = PromptTemplate.load(PROMPT_FILE)

    @property
    def prompt_version(self) -> str:
        return self._template.version

    @property
    def config(self) -> SummaryConfig:
        return self._config

    def summarize_many(self, briefs: Iterable[StoryBrief]) -> list[SummaryRow]:
        """``summarize`` for each brief, in order."""
        return [self.summarize(brief) for brief in briefs]

    def summarize(self, brief: StoryBrief) -> SummaryRow:
        """The story's summary: the cached one when the story did not change materially, else a new one
        (LLM when configured and allowed, extractive otherwise), stored before it is returned."""
        with session_scope(self._sessions) as session:
            cached = latest_summary(session, story_id=brief.story_id)
        if self._config.uses_llm:
            llm_print = self._fingerprint(brief, "llm")
            if cached is not None and self._current(cached, brief, llm_print, "llm"):
                return cached
            written = self._llm_summary(brief, llm_print)
            if written is not None:
                return written
        extractive_print = self._fingerprint(brief, "extractive")
        if cached is not None and self._current(cached, brief, extractive_print, "extractive"):
            return cached
        text = extractive_summary(brief)
        return self._save(self._row(brief, extractive_print, "extractive", text, self._clock()))

    # ------------------------------------------------------------------------------------------ internals

    def _labels(self, method: SummaryMethod) -> tuple[str, str]:
        """(model, prompt version) recorded for ``method``: empty for extractive summaries."""
        return (self._config.model, self._template.version) if method == "llm" else ("", "")

    def _fingerprint(self, brief: StoryBrief, method: SummaryMethod) -> str:
        model, version = self._labels(method)
        return fingerprint(brief, method=method, model=model, prompt_version=version)

    def _current(self, cached: SummaryRow, brief: StoryBrief, print_: str, method: SummaryMethod) -> bool:
        model, version = self._labels(method)
        return is_current(
            cached,
            brief,
            fingerprint=print_,
            method=method,
            model=model,
            prompt_version=version,
            material_change=self._config.material_change,
        )

    def _row(
        self,
        brief: StoryBrief,
        print_: str,
        method: SummaryMethod,
        text: str,
        at: datetime,
        answer: _Answer | None = None,
    ) -> NewSummary:
        model, version = self._labels(method)
        tokens_in, tokens_out = (answer.input_tokens, answer.output_tokens) if answer else (0, 0)
        return NewSummary(
            story_id=brief.story_id,
            fingerprint=print_,
            method=method,
            summary=text,
            story_size=brief.size,
            keywords=brief.top_keywords(FINGERPRINT_KEYWORDS),
            created_at=at,
            model=model,
            prompt_version=version,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost_usd=self._config.cost(tokens_in, tokens_out),
        )

    def _save(self, row: NewSummary) -> SummaryRow:
        with session_scope(self._sessions) as session:
            stored = save_summary(session, row=row)
        logger.info(
            "story %d: %s summary stored (%.6f USD)",
            row.story_id,
            row.method,
            row.cost_usd,
            extra={"story_id": row.story_id, "method": row.method, "cost_usd": row.cost_usd},
        )
        return stored

    def _llm_summary(self, brief: StoryBrief, print_: str) -> SummaryRow | None:
        """A new LLM summary, stored; ``None`` (logged) when the prompt, the cost cap or the API says no."""
        config, story_id = self._config, brief.story_id
        prompt = render_prompt(self._template, brief, max_tokens=config.max_input_tokens)
        if prompt.items == 0:
            _instead(story_id, "no document fits a prompt of %d tokens", config.max_input_tokens)
            return None
        now = self._clock()
        worst = config.cost(prompt.tokens, config.max_output_tokens)
        with session_scope(self._sessions) as session:
            spent = spent_since(session, since=day_start(now))
        if spent + worst > config.daily_cost_cap_usd:
            cap = config.daily_cost_cap_usd
            why = "cost cap reached (%.6f of %.6f USD spent today, this call up to %.6f) until midnight UTC"
            _instead(story_id, why, spent, cap, worst)
            return None
        try:
            answer = self._ask(prompt)
        except openai.OpenAIError as exc:
            where = config.base_url or "the OpenAI API"
            _instead(story_id, "request to %s failed (%s: %s)", where, type(exc).__name__, exc)
            return None
        text = sanitize(answer.text)
        if not text:
            _instead(story_id, "the model %s answered nothing", config.model)
            return None
        return self._save(self._row(brief, print_, "llm", text, now, answer))

    def _ask(self, prompt: Prompt) -> _Answer:
        if self._client is None:
            self._client = self._client_factory(self._config)
        response = self._client.chat.completions.create(
            model=self._config.model,
            messages=[
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ],
            max_tokens=self._config.max_output_tokens,
            temperature=0.2,
        )
        text = (response.choices[0].message.content or "") if response.choices else ""
        usage = response.usage
        if usage is None:  # some local servers report none: price the estimates
            return _Answer(text, prompt.tokens, estimate_tokens(text))
        return _Answer(text, usage.prompt_tokens, usage.completion_tokens)


def _instead(story_id: int, why: str, *args: object) -> None:
    """Log why a story gets an extractive summary instead of an LLM one."""
    logger.warning(
        "story %d: summary " + why + "; extractive summary instead",
        story_id,
        *args,
        extra={"story_id": story_id},
    )
