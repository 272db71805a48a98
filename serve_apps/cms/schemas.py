"""HTTP schemas of the CMS: separate create / update / public shapes, validated at the edge."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, get_type_hints

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    create_model,
    field_validator,
    model_validator,
)

from serve_apps.inputs import MAX_ID, MAX_VERSION, IsoDateTime
from storage.cms_audit import AuditRow
from storage.cms_events import DeliveryLogRow
from storage.schedules import RunRow

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Role = Literal["admin", "editor", "author", "viewer"]
Status = Literal["draft", "in_review", "published", "archived"]
Locale = Literal["en", "ar"]


class RowOut(BaseModel):
    """A response read from a storage row (``Model.model_validate(row)``)."""

    model_config = ConfigDict(from_attributes=True)


def row_out(name: str, row: type[DataclassInstance]) -> type[RowOut]:
    """A response model ``name`` with the fields of storage's ``row`` dataclass, in its order, each
    required: the row is their one definition."""
    hints = get_type_hints(row)
    fields: dict[str, Any] = {f.name: (hints[f.name], ...) for f in dataclasses.fields(row)}
    return create_model(name, __base__=RowOut, __module__=__name__, **fields)


class Seo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title_en: str | None = Field(default=None, max_length=200)
    title_ar: str | None = Field(default=None, max_length=200)
    description_en: str | None = Field(default=None, max_length=500)
    description_ar: str | None = Field(default=None, max_length=500)
    keywords: list[str] = Field(default_factory=list, max_length=30)
    canonical_url: str | None = Field(default=None, max_length=2000)
    noindex: StrictBool = False


def _http_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


class ItemFields(BaseModel):
    """Editable fields of an item; every field optional (PATCH sends only what changes)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["article", "page"] | None = None
    category: str | None = Field(default=None, max_length=100, description="Category slug")
    tags: list[str] | None = Field(default=None, max_length=50, description="Tag slugs")
    title_en: str | None = Field(default=None, max_length=300)
    title_ar: str | None = Field(default=None, max_length=300)
    summary_en: str | None = Field(default=None, max_length=2000)
    summary_ar: str | None = Field(default=None, max_length=2000)
    body_en: str | None = Field(default=None, max_length=200_000, description="HTML; sanitised on output")
    body_ar: str | None = Field(default=None, max_length=200_000, description="HTML; sanitised on output")
    slug_en: str | None = Field(default=None, max_length=100, description="Generated from the title if unset")
    slug_ar: str | None = Field(default=None, max_length=100, description="Generated from the title if unset")
    featured_image_url: str | None = Field(default=None, max_length=2000)
    seo: Seo | None = None
    publish_at: IsoDateTime | None = Field(default=None, description="Publish automatically at this time")
    unpublish_at: IsoDateTime | None = Field(default=None, description="Archive automatically at this time")

    _url = field_validator("featured_image_url")(_http_url)

    @model_validator(mode="after")
    def _times_in_order(self) -> ItemFields:
        if self.publish_at and self.unpublish_at and self.unpublish_at <= self.publish_at:
            raise ValueError("unpublish_at must be later than publish_at")
        return self


class ItemCreate(ItemFields):
    @model_validator(mode="after")
    def _needs_a_title(self) -> ItemCreate:
        if not (self.title_en or self.title_ar):
            raise ValueError("an item needs a title in English (title_en) or Arabic (title_ar)")
        return self


class LocaleView(BaseModel):
    title: str | None
    summary: str | None
    body: str | None = Field(description="Sanitised HTML")
    slug: str | None


class Localized(LocaleView):
    locale: Locale
    fallbacks: list[str] = Field(description="Fields shown from the other locale because this one is empty")


class ItemOut(BaseModel):
    id: int
    type: str
    status: Status
    author_id: int | None
    category: str | None
    tags: list[str]
    en: LocaleView
    ar: LocaleView
    featured_image_url: str | None
    seo: dict[str, Any]
    publish_at: datetime | None
    unpublish_at: datetime | None
    published_at: datetime | None
    version: int = Field(description="Also the ETag; send it back in If-Match")
    created_at: datetime
    updated_at: datetime
    allowed_transitions: list[str] = Field(description="Statuses the caller may move this item to")
    localized: Localized | None = None


class ItemPageOut(BaseModel):
    items: list[ItemOut]
    next_cursor: str | None


class TransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Status


class RevisionOut(RowOut):
    version: int
    actor: str
    note: str | None
    created_at: datetime
    data: dict[str, Any]


class FieldChange(BaseModel):
    field: str
    before: Any
    after: Any


class DiffOut(BaseModel):
    item_id: int
    from_version: int
    to_version: int
    changes: list[FieldChange]


class BulkUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int = Field(ge=1, le=MAX_ID)
    version: int | None = Field(
        default=None, ge=1, le=MAX_VERSION, description="Expected version (412-style refusal if stale)"
    )
    fields: ItemFields | None = None


class BulkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["create", "update", "publish", "archive"]
    create: list[ItemCreate] | None = Field(default=None, max_length=500)
    items: list[BulkUpdate] | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _payload_matches_action(self) -> BulkIn:
        if self.action == "create" and not self.create:
            raise ValueError("action create needs `create`: a list of items")
        if self.action != "create" and not self.items:
            raise ValueError(f"action {self.action} needs `items`: a list of {{id, version}}")
        return self


class BulkResult(BaseModel):
    index: int
    id: int | None
    ok: bool
    status: str | None = None
    version: int | None = None
    error: str | None = None


class BulkOut(BaseModel):
    action: str
    count: int
    results: list[BulkResult]


class Taxonomy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str | None = Field(default=None, max_length=100)
    name_en: str | None = Field(default=None, max_length=200)
    name_ar: str | None = Field(default=None, max_length=200)


class TaxonomyOut(RowOut):
    id: int
    slug: str
    name_en: str | None
    name_ar: str | None


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320)
    password: str = Field(max_length=1000)


class Refresh(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(max_length=4000)


class Tokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    display_name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)
    role: Role


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    active: StrictBool | None = None
    display_name: str | None = Field(default=None, min_length=1, max_length=200)


class UserOut(RowOut):
    id: int
    email: str
    display_name: str
    role: str
    active: bool
    created_at: datetime


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: Role


class KeyOut(RowOut):
    id: int
    name: str
    prefix: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The key itself: shown this once, store it now")


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000)
    events: list[str] = Field(
        default_factory=list, max_length=50, description="[] = every event; item.* works"
    )
    secret: str | None = Field(default=None, min_length=16, max_length=200, description="Generated if unset")

    _url = field_validator("url")(_http_url)


if TYPE_CHECKING:  # models made at run time: to the type checker, rows read as responses
    AuditOut = RowOut
else:
    #: The audit log's rows, as storage reads them.
    AuditOut = row_out("AuditOut", AuditRow)


class WebhookOut(RowOut):
    id: int
    url: str
    events: list[str]
    active: bool
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The HMAC key: shown this once; verify X-Pulse-Signature with it")


if TYPE_CHECKING:
    DeliveryOut = RowOut
else:
    #: A webhook's delivery log, as storage reads it.
    DeliveryOut = row_out("DeliveryOut", DeliveryLogRow)


if TYPE_CHECKING:
    RunOut = RowOut
else:
    #: A run of a scheduled job (``schedule_runs``), as storage reads it.
    RunOut = row_out("RunOut", RunRow)


class ScheduleOut(BaseModel):
    """A scheduled job (``pulse schedules list``): what it runs, when, and how its last run went."""

    name: str
    kind: str = Field(description="The job: collect, recluster, embed, backup, ...")
    args: list[str]
    timing: str = Field(description="'every 900 s', 'daily at 03:00 UTC' or 'on model-activation'")
    enabled: bool = Field(description="False when the settings disable it; note says why")
    paused: bool
    note: str | None
    next_run_at: datetime | None
    run_requested_at: datetime | None = Field(description="A run-now the scheduler has not started yet")
    last_run: RunOut | None
