"""Deletion log for the index shards: every deleted document gets a row (by trigger, whoever deletes it),
and its id is the watermark shards catch up from.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "document_deletions",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("document_id", sa.BigInteger, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.execute(
        """
        CREATE FUNCTION pulse_log_document_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO document_deletions (document_id) VALUES (OLD.id);
            RETURN OLD;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER documents_log_deletion AFTER DELETE ON documents "
        "FOR EACH ROW EXECUTE FUNCTION pulse_log_document_deletion()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER documents_log_deletion ON documents")
    op.execute("DROP FUNCTION pulse_log_document_deletion()")
    op.drop_table("document_deletions")
