"""Public HTTP schemas of the recommendation routes: events, recommendations and experiments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints, field_validator

from serve_apps.inputs import IsoDateTime
from serve_apps.search.schemas import ModelRef, RecommendResult

EventType = Literal["view", "click", "like", "dislike", "share", "dwell", "impression"]
#: Most events one ``POST /v1/events`` takes.
MAX_EVENTS = 1000
#: A client's id of a user, a session or an event: printable, no spaces at the ends.
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
Strategy = Literal["average_vector", "best_score"]


class EventIn(BaseModel):
    """One interaction. Exactly one of ``user_id`` and ``session_id``."""

    model_config = ConfigDict(extra="forbid")

    event_id: ClientId = Field(
        description="The client's id of the event: posting it again stores nothing new"
    )
    user_id: ClientId | None = Field(default=None, description="The reader's user id (or session_id)")
    session_id: ClientId | None = Field(default=None, description="An anonymous reader's session id")
    document_id: int = Field(ge=1, le=2**63 - 1, description="The Pulse document interacted with")
    type: EventType = Field(
        description="view, click, like, dislike, share, dwell (seconds in value), impression (shown only)"
    )
    timestamp: IsoDateTime = Field(description="When it happened (ISO 8601; without an offset, UTC)")
    value: float | None = Field(default=None, ge=0, le=86_400, description="dwell: seconds spent reading")
    list_id: uuid.UUID | None = Field(
        default=None, description="The list_id of the recommendation list the event answers, if any"
    )

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        """A timestamp without an offset is UTC."""
        return value if value.tzinfo else value.replace(tzinfo=UTC)


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(
        min_length=1, max_length=MAX_EVENTS, description=f"1 to {MAX_EVENTS} events"
    )


class EventsOut(BaseModel):
    stored: int = Field(description="Events stored by this request")
    duplicates: list[str] = Field(
        description="Event ids stored before (by an earlier request): left unchanged"
    )


class RecommendResponse(BaseModel):
    list_id: uuid.UUID = Field(description="Send it with the events of this list (impressions, clicks)")
    subject: str | None = Field(description="user:<id> or session:<id>; null for an anonymous list")
    model: ModelRef | None = Field(description="The model whose index served the list")
    strategy: str = Field(
        description=(
            "personal (from a profile), cold_start (trending and popular: no profile yet), examples, similar"
        )
    )
    experiment: str | None = None
    variant: str | None = None
    results: list[RecommendResult]
    timings_ms: dict[str, float]


Example = StrictInt | Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class RecommendQuery(BaseModel):
    """Qdrant-style: documents like the positive examples and unlike the negative ones."""

    model_config = ConfigDict(extra="forbid")

    positive: list[Example] = Field(default_factory=list, max_length=20, description="Document ids or texts")
    negative: list[Example] = Field(default_factory=list, max_length=20, description="Document ids or texts")
    strategy: Strategy = Field(
        default="average_vector",
        description=(
            "average_vector: near 2 mean(positive) - mean(negative); best_score: each candidate's best "
            "similarity to a positive, sunk below all when a negative is closer"
        ),
    )
    k: int = Field(default=10, ge=1, le=100)
    diversity: float | None = Field(default=None, ge=0, le=1, description="MMR diversity (0: by score)")
    user_id: ClientId | None = Field(default=None, description="Exclude what this user has seen")
    session_id: ClientId | None = None
    lang: list[str] = Field(default_factory=list, max_length=20)
    source: list[str] = Field(default_factory=list, max_length=50)
    category: list[str] = Field(default_factory=list, max_length=50)
    since: IsoDateTime | None = None
    until: IsoDateTime | None = None


VariantName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class VariantParams(BaseModel):
    """What a variant changes in the ranking (unset: the settings' value)."""

    model_config = ConfigDict(extra="forbid")

    content: float | None = Field(default=None, ge=0, le=100)
    collaborative: float | None = Field(default=None, ge=0, le=100)
    popularity: float | None = Field(default=None, ge=0, le=100)
    trending: float | None = Field(default=None, ge=0, le=100)
    freshness: float | None = Field(default=None, ge=0, le=100)
    diversity: float | None = Field(default=None, ge=0, le=1)


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: VariantName
    weight: float = Field(
        default=1.0, gt=0, le=1000, description="Share of subjects (relative to the others)"
    )
    params: VariantParams = Field(default_factory=VariantParams)


class ExperimentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variants: list[VariantIn] = Field(min_length=2, max_length=10)
    active: StrictBool = Field(
        default=True, description="Active experiments assign every personal list a variant"
    )


class RateOut(BaseModel):
    rate: float | None = Field(description="Click-through: lists with a click, like or share / lists served")
    low: float | None = Field(description="95 % Wilson interval, low end")
    high: float | None


class VariantReport(BaseModel):
    name: str
    weight: float
    params: dict[str, Any]
    lists: int = Field(description="Lists served")
    clicked_lists: int = Field(description="Lists with at least one click, like or share")
    clicks: int
    impressions: int
    ctr: RateOut
    lift: RateOut | None = Field(
        default=None, description="This variant's CTR minus the first variant's, with a 95 % interval"
    )


class ExperimentOut(BaseModel):
    name: str
    active: bool
    created_at: datetime
    updated_at: datetime
    variants: list[VariantReport]
