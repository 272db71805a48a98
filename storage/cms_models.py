"""SQLAlchemy models of the CMS: users, API keys, content items with per-locale fields, categories, tags,
revisions, the audit log, webhooks, the event outbox and webhook deliveries (migration 0005), and the
answers kept for ``Idempotency-Key`` retries (migration 0011)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base

#: Content types.
CONTENT_TYPES = ("article", "page")
#: Workflow states, in order.
STATUSES = ("draft", "in_review", "published", "archived")
#: Roles, most powerful first.
ROLES = ("admin", "editor", "author", "viewer")
#: Locales with their own fields.
LOCALES = ("en", "ar")


def table_of(model: type[Base]) -> Table:
    """A model's table, for Core statements (no ORM bookkeeping on hot paths)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


# Weighted full-text vectors: title A, summary B, body C, per language configuration.
CMS_TSV_EN = (
    "setweight(to_tsvector('english', coalesce(title_en, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(summary_en, '')), 'B') || "
    "setweight(to_tsvector('english', coalesce(body_text_en, '')), 'C')"
)
CMS_TSV_AR = (
    "setweight(to_tsvector('arabic', coalesce(title_ar, '')), 'A') || "
    "setweight(to_tsvector('arabic', coalesce(summary_ar, '')), 'B') || "
    "setweight(to_tsvector('arabic', coalesce(body_text_ar, '')), 'C')"
)


class CmsUser(Base):
    __tablename__ = "cms_users"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(Text, unique=True)
    display_name: Mapped[str] = mapped_column(Text)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("true"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CmsApiKey(Base):
    """A service key: only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "cms_api_keys"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)  # shown in listings, finds the row
    key_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("cms_users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CmsRefreshToken(Base):
    """Issued refresh tokens (by JWT id): rotation revokes the old one; logout revokes."""

    __tablename__ = "cms_refresh_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("cms_users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CmsCategory(Base):
    __tablename__ = "cms_categories"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    slug: Mapped[str] = mapped_column(Text, unique=True)
    name_en: Mapped[str | None] = mapped_column(Text)
    name_ar: Mapped[str | None] = mapped_column(Text)


class CmsTag(Base):
    __tablename__ = "cms_tags"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    slug: Mapped[str] = mapped_column(Text, unique=True)
    name_en: Mapped[str | None] = mapped_column(Text)
    name_ar: Mapped[str | None] = mapped_column(Text)


class CmsItem(Base):
    """A piece of content with English and Arabic fields; ``version`` is its ETag."""

    __tablename__ = "cms_items"
    __table_args__ = (
        Index(
            "uq_cms_items_slug_en", "slug_en", unique=True, postgresql_where=sql_text("slug_en IS NOT NULL")
        ),
        Index(
            "uq_cms_items_slug_ar", "slug_ar", unique=True, postgresql_where=sql_text("slug_ar IS NOT NULL")
        ),
        Index("ix_cms_items_status_updated", "status", "updated_at"),
        Index("ix_cms_items_tsv_en", "tsv_en", postgresql_using="gin"),
        Index("ix_cms_items_tsv_ar", "tsv_ar", postgresql_using="gin"),
        Index("ix_cms_items_publish_at", "publish_at", postgresql_where=sql_text("publish_at IS NOT NULL")),
        Index(
            "ix_cms_items_unpublish_at", "unpublish_at", postgresql_where=sql_text("unpublish_at IS NOT NULL")
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), server_default=sql_text("'draft'"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("cms_users.id", ondelete="SET NULL"), index=True)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("cms_categories.id", ondelete="SET NULL"))
    title_en: Mapped[str | None] = mapped_column(Text)
    title_ar: Mapped[str | None] = mapped_column(Text)
    summary_en: Mapped[str | None] = mapped_column(Text)
    summary_ar: Mapped[str | None] = mapped_column(Text)
    body_en: Mapped[str | None] = mapped_column(Text)  # HTML, sanitised on output
    body_ar: Mapped[str | None] = mapped_column(Text)
    body_text_en: Mapped[str | None] = mapped_column(Text)  # the body's text, for search
    body_text_ar: Mapped[str | None] = mapped_column(Text)
    slug_en: Mapped[str | None] = mapped_column(Text)
    slug_ar: Mapped[str | None] = mapped_column(Text)
    featured_image_url: Mapped[str | None] = mapped_column(Text)
    seo: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sql_text("'{}'::jsonb"))
    publish_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    unpublish_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, server_default=sql_text("1"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    tsv_en: Mapped[str] = mapped_column(TSVECTOR, Computed(CMS_TSV_EN, persisted=True))
    tsv_ar: Mapped[str] = mapped_column(TSVECTOR, Computed(CMS_TSV_AR, persisted=True))


class CmsItemTag(Base):
    __tablename__ = "cms_item_tags"

    item_id: Mapped[int] = mapped_column(ForeignKey("cms_items.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(
        ForeignKey("cms_tags.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class CmsRevision(Base):
    """Every save of an item: the editable fields as they were after it."""

    __tablename__ = "cms_revisions"
    __table_args__ = (UniqueConstraint("item_id", "version", name="uq_cms_revisions_item_version"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("cms_items.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    actor: Mapped[str] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CmsAudit(Base):
    """Every write and every denied action: who, what, when, outcome, before/after."""

    __tablename__ = "cms_audit"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    actor: Mapped[str] = mapped_column(Text)  # "user:3", "key:7", "system:scheduler", "anonymous"
    ip: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    target: Mapped[str | None] = mapped_column(Text)  # "item:12", "user:4"...
    outcome: Mapped[str] = mapped_column(String(16))  # ok | denied
    reason: Mapped[str | None] = mapped_column(Text)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class CmsWebhook(Base):
    __tablename__ = "cms_webhooks"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)  # the HMAC key; needed in clear to sign
    events: Mapped[list[str]] = mapped_column(JSONB, server_default=sql_text("'[]'::jsonb"))  # [] = all
    active: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("true"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CmsEvent(Base):
    """The outbox: one row per content event, written in the transaction of the change it reports."""

    __tablename__ = "cms_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)  # the watermark
    type: Mapped[str] = mapped_column(Text)  # item.created, item.updated, item.published, bulk.published...
    item_ids: Mapped[list[int]] = mapped_column(JSONB)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CmsDelivery(Base):
    """One webhook's delivery of one event, with its attempts."""

    __tablename__ = "cms_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id", name="uq_cms_deliveries_webhook_event"),
        Index("ix_cms_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("cms_webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("cms_events.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(
        String(16), server_default=sql_text("'pending'")
    )  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, server_default=sql_text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CmsCursor(Base):
    """A reader's watermark in the outbox (``search-sync``, ``webhooks``): the last event id it handled."""

    __tablename__ = "cms_cursors"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, server_default=sql_text("0"))


class CmsIdempotencyKey(Base):
    """A write sent with an ``Idempotency-Key``: claimed in the write's own transaction (so a key exists
    exactly when its write committed), then the answer the caller got, replayed to a retry with the same
    key (``serve_apps/cms/idempotency.py``). Rows older than ``PULSE_CMS__IDEMPOTENCY_TTL_S`` are purged."""

    __tablename__ = "cms_idempotency_keys"
    __table_args__ = (Index("ix_cms_idempotency_keys_created", "created_at"),)

    principal: Mapped[str] = mapped_column(Text, primary_key=True)  # Principal.label: user:3, key:7
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of method, path, query and body
    status: Mapped[int | None] = mapped_column(Integer)  # NULL until the answer is recorded
    headers: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
