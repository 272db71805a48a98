"""The recommendation routes, served by the search application's ingress (Serve routes by prefix and the
search application holds ``/``, the query embedder and the index handles these routes use):

- ``POST /v1/events``: interaction events, validated as a whole (one bad event refuses the batch: 422 with a
  reason per event), stored once per event id, then the profile actor is told (it applies them before the
  response, within a second, or later from its poll);
- ``GET /v1/recommend``: a reader's list (personal, or trending and popular while they have no profile);
- ``POST /v1/recommend``: documents like some examples and unlike others (ids or texts);
- ``PUT`` / ``GET /v1/experiments/{name}``: an A/B experiment over ranking parameters and its report.

Every list gets a ``list_id``, recorded (after the response) with the experiment variant it was ranked
with; events that name the list are counted for that variant.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.ext.asyncio import AsyncSession

from actors.filters import SearchFilter
from actors.rec_ranking import BlendParams, Pick
from serve_apps.cms.security import Principal
from serve_apps.errors import Forbidden, InvalidRequest, NotFound, Unauthorized, error_responses
from serve_apps.inputs import IsoDateTime
from serve_apps.recommend.context import EXPERIMENT_ROLES, Caller, Rec, check_reader, may_act_for, subject_of
from serve_apps.recommend.engine import Outcome, blend_params
from serve_apps.recommend.experiments import assign_variant, difference, wilson
from serve_apps.recommend.schemas import (
    ClientId,
    EventsIn,
    EventsOut,
    ExperimentIn,
    ExperimentOut,
    RateOut,
    RecommendQuery,
    RecommendResponse,
    VariantReport,
)
from serve_apps.search.params import build_search_filter, search_filter
from serve_apps.search.schemas import ModelRef, ReasonOut, RecommendResult, StoryRef
from storage.documents import fetch_summaries
from storage.rec_events import EventIn as StoredEvent
from storage.rec_events import existing_documents, store_events
from storage.rec_experiments import (
    ExperimentRow,
    ServedList,
    Variant,
    experiment_counts,
    get_experiment,
    put_experiment,
)
from storage.trend_queries import stories_of_documents

logger = logging.getLogger(__name__)

router = APIRouter()

#: Seconds ``POST /v1/events`` waits for the profile actor to apply the events it stored.
APPLY_WAIT_S = 1.0
ExperimentName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")]


# ------------------------------------------------------------------------------------------------ events
def _not_the_callers(who: Principal, body: EventsIn) -> list[int]:
    """The events a user's token may not post (anything but its own ``user_id``); a key may post any."""
    if who.kind == "key":
        return []
    return [i for i, ev in enumerate(body.events) if may_act_for(who, ev.user_id) is not None]


def _refusals(body: EventsIn, now: datetime, skew_s: float) -> list[dict[str, str]]:
    """Why each invalid event of the batch is invalid (what pydantic's types cannot say)."""
    details: list[dict[str, str]] = []
    horizon = now + timedelta(seconds=skew_s)
    for i, ev in enumerate(body.events):
        at = f"events.{i}"
        if (ev.user_id is None) == (ev.session_id is None):
            details.append({"field": f"{at}.user_id", "reason": "give exactly one of user_id and session_id"})
        if ev.timestamp > horizon:
            details.append(
                {
                    "field": f"{at}.timestamp",
                    "reason": f"{ev.timestamp.isoformat()} is more than {skew_s:g} s ahead of the server's "
                    "clock",
                }
            )
        if ev.type == "dwell" and ev.value is None:
            details.append({"field": f"{at}.value", "reason": "a dwell event needs value: the seconds spent"})
        if ev.type != "dwell" and ev.value is not None:
            details.append({"field": f"{at}.value", "reason": f"a {ev.type} event takes no value"})
    return details


@router.post(
    "/v1/events",
    response_model=EventsOut,
    summary="Record interaction events (1-1,000; idempotent by event_id)",
    responses=error_responses(401, 403, 422, 503),
)
async def post_events(body: EventsIn, rec: Rec, who: Caller) -> EventsOut:
    if who.kind == "anonymous":
        raise Unauthorized("POST /v1/events: send an API key (X-API-Key) or the user's access token")
    if refused := _not_the_callers(who, body):
        raise Forbidden(
            f"events {refused[:10]} are not user {who.id}'s: a user's token posts only events with its own "
            "user_id; a client application posts others' with an API key"
        )
    details = _refusals(body, datetime.now(UTC), rec.settings.clock_skew_s)
    async with rec.sessions() as session, session.begin():
        known = await existing_documents(session, [ev.document_id for ev in body.events])
        for i, ev in enumerate(body.events):
            if ev.document_id not in known:
                details.append(
                    {"field": f"events.{i}.document_id", "reason": f"no document with id {ev.document_id}"}
                )
        if details:
            raise InvalidRequest(
                f"{len({d['field'].split('.')[1] for d in details})} of {len(body.events)} events are "
                "invalid; nothing was stored: fix them and send the batch again",
                details=details,
            )
        stored = await store_events(
            session,
            [
                StoredEvent(
                    event_id=ev.event_id,
                    subject=subject_of(ev.user_id, ev.session_id) or "",
                    user_id=ev.user_id,
                    session_id=ev.session_id,
                    document_id=ev.document_id,
                    type=ev.type,
                    occurred_at=ev.timestamp,
                    value=ev.value,
                    list_id=ev.list_id,
                    posted_by=who.label,
                )
                for ev in body.events
            ],
        )
    if stored.stored:
        try:  # the hint: a lost one only delays (the actor polls)
            await asyncio.wait_for(rec.profiles.catch_up.remote(), timeout=APPLY_WAIT_S)
        except Exception as exc:
            logger.warning("profile actor did not apply new events at once: %s", exc)
    return EventsOut(stored=len(stored.stored), duplicates=stored.duplicates)


# ------------------------------------------------------------------------------------------- experiments
def _variant(
    rows: list[ExperimentRow], name: str | None, subject: str | None
) -> tuple[ExperimentRow | None, Variant | None]:
    if subject is None:
        return None, None
    chosen = next((r for r in rows if r.name == name), None) if name else (rows[0] if rows else None)
    if chosen is None:
        return None, None
    picked = assign_variant(chosen.name, subject, [(v.name, v.weight) for v in chosen.variants])
    return chosen, next(v for v in chosen.variants if v.name == picked)


@router.put(
    "/v1/experiments/{name}",
    response_model=ExperimentOut,
    summary="Create or replace an A/B experiment over ranking parameters (admin or editor)",
    responses=error_responses(401, 403, 422),
)
async def put_experiment_route(
    name: ExperimentName, body: ExperimentIn, rec: Rec, who: Caller
) -> ExperimentOut:
    if who.kind == "anonymous":
        raise Unauthorized("PUT /v1/experiments: send an admin's or editor's API key or access token")
    if who.role not in EXPERIMENT_ROLES:
        raise Forbidden(f"role {who.role} may not manage experiments; an admin or editor may")
    names = [v.name for v in body.variants]
    if len(set(names)) != len(names):
        raise InvalidRequest(
            "variants: names must be distinct", details=[{"field": "variants", "reason": "duplicate name"}]
        )
    async with rec.sessions() as session, session.begin():
        row = await put_experiment(
            session,
            name=name,
            variants=[
                Variant(v.name, v.weight, v.params.model_dump(exclude_none=True)) for v in body.variants
            ],
            active=body.active,
        )
    rec.experiments.expire()
    return await _report(rec, row)


@router.get(
    "/v1/experiments/{name}",
    response_model=ExperimentOut,
    summary="An experiment's click-through per variant, with 95 % intervals",
    responses=error_responses(401, 404, 422),
)
async def get_experiment_route(name: ExperimentName, rec: Rec, who: Caller) -> ExperimentOut:
    if who.kind == "anonymous":
        raise Unauthorized("GET /v1/experiments: send an API key or an access token")
    async with rec.sessions() as session:
        row = await get_experiment(session, name)
    if row is None:
        raise NotFound(
            f"no experiment named {name}; create it with PUT /v1/experiments/{name}",
            code="experiment_not_found",
        )
    return await _report(rec, row)


async def _report(rec: Rec, row: ExperimentRow) -> ExperimentOut:
    async with rec.sessions() as session:
        counts = {c.variant: c for c in await experiment_counts(session, row.name)}
    reports: list[VariantReport] = []
    first = None
    for v in row.variants:
        c = counts.get(v.name)
        lists, clicked = (c.lists, c.clicked_lists) if c else (0, 0)
        rate = wilson(clicked, lists)
        lift = None
        if first is None:
            first = rate
        else:
            diff = difference(first, rate)
            lift = (
                RateOut(rate=diff[0], low=diff[1], high=diff[2])
                if diff
                else RateOut(rate=None, low=None, high=None)
            )
        reports.append(
            VariantReport(
                name=v.name,
                weight=v.weight,
                params=v.params,
                lists=lists,
                clicked_lists=clicked,
                clicks=c.clicks if c else 0,
                impressions=c.impressions if c else 0,
                ctr=RateOut(rate=rate.rate, low=rate.low, high=rate.high),
                lift=lift,
            )
        )
    return ExperimentOut(
        name=row.name,
        active=row.active,
        created_at=row.created_at,
        updated_at=row.updated_at,
        variants=reports,
    )


# ------------------------------------------------------------------------------------------- recommend
_REASON_TEXT = {
    "similar": "Similar to “{title}”, which you read",
    "examples": "Close to the examples you gave",
    "co_read": "Read by people who read “{title}”",
    "trending": "In the trending story “{title}”",
    "popular": "Read by many readers lately",
    "fresh": "Just published",
}


async def results_with_reasons(session: AsyncSession, picks: list[Pick]) -> list[RecommendResult]:
    """Each pick as a search result (title, URL, story...) with its reason in words: one query for the
    documents (the picks' and those their reasons name), one for their stories."""
    ids = [p.document_id for p in picks]
    related = {p.reason.document_id for p in picks if p.reason.document_id is not None}
    docs = await fetch_summaries(session, list(dict.fromkeys([*ids, *related])))
    stories = await stories_of_documents(session, [i for i in ids if i in docs])
    out: list[RecommendResult] = []
    for p in picks:
        doc = docs.get(p.document_id)
        if doc is None:  # deleted meanwhile
            continue
        r = p.reason
        title = ""
        story = stories.get(p.document_id)
        if r.document_id is not None:
            related_doc = docs.get(r.document_id)
            title = related_doc.title if related_doc is not None else f"document {r.document_id}"
        elif r.story_id is not None:
            title = story.label if story is not None else f"story {r.story_id}"
        out.append(
            RecommendResult(
                **asdict(doc),
                score=p.score,
                story=StoryRef(id=story.id, label=story.label) if story is not None else None,
                reason=ReasonOut(
                    kind=r.kind,
                    text=_REASON_TEXT[r.kind].format(title=title),
                    document_id=r.document_id,
                    story_id=r.story_id,
                ),
            )
        )
    return out


async def _respond(
    rec: Rec,
    outcome: Outcome,
    *,
    subject: str | None,
    model: ModelRef,
    params: BlendParams,
    experiment: str | None = None,
    variant: str | None = None,
) -> RecommendResponse:
    t0 = time.perf_counter()
    async with rec.sessions() as session:
        results = await results_with_reasons(session, outcome.ranking.picks)
    outcome.timings["db"] = time.perf_counter() - t0
    list_id = uuid.uuid4()
    rec.served.add(
        ServedList(
            list_id=list_id,
            subject=subject or "anonymous",
            experiment=experiment,
            variant=variant,
            document_ids=[r.id for r in results],
            params=asdict(params),
        )
    )
    return RecommendResponse(
        list_id=list_id,
        subject=subject,
        model=model,
        strategy=outcome.strategy,
        experiment=experiment,
        variant=variant,
        results=results,
        timings_ms={k: round(v * 1000, 2) for k, v in outcome.timings.items()},
    )


@router.get(
    "/v1/recommend",
    response_model=RecommendResponse,
    summary="A reader's recommendations, each with its reason (personal, or trending and popular at first)",
    responses=error_responses(401, 403, 422, 503),
)
async def recommend(
    rec: Rec,
    who: Caller,
    flt: Annotated[SearchFilter, Depends(search_filter)],
    user_id: Annotated[
        ClientId | None, Query(description="The reader (needs their token or an API key)")
    ] = None,
    session_id: Annotated[ClientId | None, Query(description="An anonymous reader's session")] = None,
    k: Annotated[int, Query(ge=1, le=100, description="How many (1-100)")] = 10,
    diversity: Annotated[
        float | None, Query(ge=0, le=1, description="MMR diversity: 0 by score alone, 1 most varied")
    ] = None,
    experiment: Annotated[
        str | None,
        Query(max_length=64, description="The experiment to assign a variant of (default: the active one)"),
    ] = None,
    as_of: Annotated[
        IsoDateTime | None,
        Query(
            description=(
                "Rank as of this time (freshness and popularity; documents published later are left out): "
                "for replays and back-tests. Default: now"
            )
        ),
    ] = None,
) -> RecommendResponse:
    if user_id is not None and session_id is not None:
        raise InvalidRequest("give user_id or session_id, not both")
    check_reader(who, user_id)
    subject = subject_of(user_id, session_id)
    chosen, variant = _variant(await rec.experiments.get(), experiment, subject)
    overrides = dict(variant.params) if variant is not None else {}
    if diversity is not None:
        overrides["diversity"] = diversity
    params = blend_params(rec.settings, overrides)
    now = time.time()
    if as_of is not None:
        at = (as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)).timestamp()
        if at > now + rec.settings.clock_skew_s:
            raise InvalidRequest("as_of: a time in the future; leave it out to rank as of now")
        now = at
        until = int(at) + 1
        flt = replace(flt, until=until if flt.until is None else min(flt.until, until))
        if flt.since is not None and flt.since >= (flt.until or until):
            raise InvalidRequest("since/as_of: since must be earlier than as_of")
    entry = await rec.switch.entry()
    outcome = await rec.recommender.personal(entry, subject, k, flt, params, now)
    return await _respond(
        rec,
        outcome,
        subject=subject,
        model=ModelRef(id=entry.id, name=entry.name),
        params=params,
        experiment=chosen.name if chosen else None,
        variant=variant.name if variant else None,
    )


@router.post(
    "/v1/recommend",
    response_model=RecommendResponse,
    summary="Documents like the positive examples and unlike the negative ones (ids or texts)",
    responses=error_responses(401, 403, 404, 422, 503),
)
async def recommend_examples(body: RecommendQuery, rec: Rec, who: Caller) -> RecommendResponse:
    if not body.positive and not body.negative:
        raise InvalidRequest("give at least one positive or negative example")
    if body.user_id is not None and body.session_id is not None:
        raise InvalidRequest("give user_id or session_id, not both")
    check_reader(who, body.user_id)
    flt = build_search_filter(body.lang, body.source, body.category, body.since, body.until)
    entry = await rec.switch.entry()
    positive = await _example_vectors(rec, entry, body.positive, "positive")
    negative = await _example_vectors(rec, entry, body.negative, "negative")
    subject = subject_of(body.user_id, body.session_id)
    seen: frozenset[int] = frozenset()
    if subject is not None:
        inputs = await rec.recommender.inputs(subject, time.time())
        seen = inputs.profile.seen if inputs.profile is not None else frozenset()
    given = frozenset(e for e in [*body.positive, *body.negative] if isinstance(e, int))
    params = blend_params(rec.settings, {"diversity": body.diversity})
    outcome = await rec.recommender.examples(
        entry, positive, negative, body.strategy, body.k, flt, params, time.time(), seen | given
    )
    return await _respond(
        rec, outcome, subject=subject, model=ModelRef(id=entry.id, name=entry.name), params=params
    )


async def _example_vectors(rec: Rec, entry: Any, examples: list[int | str], side: str) -> np.ndarray:
    ids = [e for e in examples if isinstance(e, int)]
    texts = [e.strip() for e in examples if isinstance(e, str)]
    if any(not t for t in texts):
        raise InvalidRequest(f"{side}: a text example is blank")
    rows: list[np.ndarray] = []
    if ids:
        found, vecs, _ = await rec.retriever.vectors_of(entry, np.asarray(ids, np.int64))
        missing = sorted(set(ids) - set(found.tolist()))
        if missing:
            raise NotFound(
                f"{side}: documents {missing} are not in the index of model {entry.name} "
                "(unknown, or not embedded yet)",
                code="document_not_found",
            )
        rows.append(vecs)
    if texts:
        rows.append(await rec.retriever.embed(entry, texts))
    return np.vstack(rows).astype(np.float32) if rows else np.zeros((0, entry.dimension), np.float32)
