"""CMS: users, API keys, refresh tokens, categories, tags, bilingual content items (weighted English and
Arabic full-text columns), revisions, audit log, webhooks, the event outbox and webhook deliveries.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TSV_EN = (
    "setweight(to_tsvector('english', coalesce(title_en, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(summary_en, '')), 'B') || "
    "setweight(to_tsvector('english', coalesce(body_text_en, '')), 'C')"
)
TSV_AR = (
    "setweight(to_tsvector('arabic', coalesce(title_ar, '')), 'A') || "
    "setweight(to_tsvector('arabic', coalesce(summary_ar, '')), 'B') || "
    "setweight(to_tsvector('arabic', coalesce(body_text_ar, '')), 'C')"
)


def _id() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True)


def _now(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "cms_users",
        _id(),
        sa.Column("email", sa.Text, nullable=False, unique=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.text("true")),
        _now("created_at"),
        sa.CheckConstraint("role IN ('admin', 'editor', 'author', 'viewer')", name="ck_cms_users_role"),
    )
    op.create_table(
        "cms_api_keys",
        _id(),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_by", sa.BigInteger, sa.ForeignKey("cms_users.id", ondelete="SET NULL")),
        _now("created_at"),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("role IN ('admin', 'editor', 'author', 'viewer')", name="ck_cms_api_keys_role"),
    )
    op.create_table(
        "cms_refresh_tokens",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.BigInteger, sa.ForeignKey("cms_users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_cms_refresh_tokens_user_id", "cms_refresh_tokens", ["user_id"])
    for table in ("cms_categories", "cms_tags"):
        op.create_table(
            table,
            _id(),
            sa.Column("slug", sa.Text, nullable=False, unique=True),
            sa.Column("name_en", sa.Text),
            sa.Column("name_ar", sa.Text),
        )
    op.create_table(
        "cms_items",
        _id(),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'draft'")),
        sa.Column("author_id", sa.BigInteger, sa.ForeignKey("cms_users.id", ondelete="SET NULL")),
        sa.Column("category_id", sa.BigInteger, sa.ForeignKey("cms_categories.id", ondelete="SET NULL")),
        *(sa.Column(f"{f}_{loc}", sa.Text) for f in ("title", "summary", "body", "body_text", "slug") for loc in ("en", "ar")),
        sa.Column("featured_image_url", sa.Text),
        sa.Column("seo", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("publish_at", sa.DateTime(timezone=True)),
        sa.Column("unpublish_at", sa.DateTime(timezone=True)),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")),
        _now("created_at"),
        _now("updated_at"),
        sa.Column("tsv_en", postgresql.TSVECTOR, sa.Computed(TSV_EN, persisted=True)),
        sa.Column("tsv_ar", postgresql.TSVECTOR, sa.Computed(TSV_AR, persisted=True)),
        sa.CheckConstraint("type IN ('article', 'page')", name="ck_cms_items_type"),
        sa.CheckConstraint(
            "status IN ('draft', 'in_review', 'published', 'archived')", name="ck_cms_items_status"
        ),
    )
    op.create_index("ix_cms_items_author_id", "cms_items", ["author_id"])
    op.create_index(
        "uq_cms_items_slug_en", "cms_items", ["slug_en"], unique=True, postgresql_where=sa.text("slug_en IS NOT NULL")
    )
    op.create_index(
        "uq_cms_items_slug_ar", "cms_items", ["slug_ar"], unique=True, postgresql_where=sa.text("slug_ar IS NOT NULL")
    )
    op.create_index("ix_cms_items_status_updated", "cms_items", ["status", "updated_at"])
    op.create_index("ix_cms_items_tsv_en", "cms_items", ["tsv_en"], postgresql_using="gin")
    op.create_index("ix_cms_items_tsv_ar", "cms_items", ["tsv_ar"], postgresql_using="gin")
    op.create_index(
        "ix_cms_items_publish_at", "cms_items", ["publish_at"], postgresql_where=sa.text("publish_at IS NOT NULL")
    )
    op.create_index(
        "ix_cms_items_unpublish_at",
        "cms_items",
        ["unpublish_at"],
        postgresql_where=sa.text("unpublish_at IS NOT NULL"),
    )
    op.create_table(
        "cms_item_tags",
        sa.Column("item_id", sa.BigInteger, sa.ForeignKey("cms_items.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag_id", sa.BigInteger, sa.ForeignKey("cms_tags.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_index("ix_cms_item_tags_tag_id", "cms_item_tags", ["tag_id"])
    op.create_table(
        "cms_revisions",
        _id(),
        sa.Column("item_id", sa.BigInteger, sa.ForeignKey("cms_items.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("data", postgresql.JSONB, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        _now("created_at"),
        sa.UniqueConstraint("item_id", "version", name="uq_cms_revisions_item_version"),
    )
    op.create_table(
        "cms_audit",
        _id(),
        _now("at"),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("ip", sa.Text),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("before", postgresql.JSONB),
        sa.Column("after", postgresql.JSONB),
    )
    op.create_index("ix_cms_audit_at", "cms_audit", ["at"])
    op.create_table(
        "cms_webhooks",
        _id(),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("events", postgresql.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.text("true")),
        _now("created_at"),
    )
    op.create_table(
        "cms_events",
        _id(),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("item_ids", postgresql.JSONB, nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False),
        _now("created_at"),
    )
    op.create_table(
        "cms_deliveries",
        _id(),
        sa.Column("webhook_id", sa.BigInteger, sa.ForeignKey("cms_webhooks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event_id", sa.BigInteger, sa.ForeignKey("cms_events.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'pending'")),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        _now("next_attempt_at"),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("webhook_id", "event_id", name="uq_cms_deliveries_webhook_event"),
    )
    op.create_index("ix_cms_deliveries_due", "cms_deliveries", ["status", "next_attempt_at"])
    op.create_table(
        "cms_cursors",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    for table in (
        "cms_cursors",
        "cms_deliveries",
        "cms_events",
        "cms_webhooks",
        "cms_audit",
        "cms_revisions",
        "cms_item_tags",
        "cms_items",
        "cms_tags",
        "cms_categories",
        "cms_refresh_tokens",
        "cms_api_keys",
        "cms_users",
    ):
        op.drop_table(table)
