"""Idempotency keys of CMS writes: a write sent with ``Idempotency-Key`` claims ``(principal, key)`` in its
own transaction, and the answer it got is kept, so a retry (the client's, or HAProxy replaying a request
whose replica died) gets that answer instead of applying the write twice.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cms_idempotency_keys",
        sa.Column("principal", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer),
        sa.Column("headers", postgresql.JSONB),
        sa.Column("body", sa.LargeBinary),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("answered_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_cms_idempotency_keys_created", "cms_idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_table("cms_idempotency_keys")
