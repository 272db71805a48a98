"""Every document has a language: ``documents.language_confidence`` (py3langid's probability, NULL when
the language was declared), and the language of documents stored without one is identified now, with
the same rules as every later write (``storage.languages``).

Before this, ``pulse ingest`` stored records without a ``language`` field with none, and the keyword
index analysed them with neither stemming nor stopwords while it analysed queries as English.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

from storage.languages import detect_language

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")

#: Documents identified per round trip.
BATCH = 2_000


def upgrade() -> None:
    op.add_column("documents", sa.Column("language_confidence", sa.Float, nullable=True))
    bind = op.get_bind()
    select = sa.text(
        "SELECT id, title, text FROM documents WHERE language IS NULL AND id > :after ORDER BY id LIMIT :n"
    )
    update = sa.text(
        "UPDATE documents SET language = :language, language_confidence = :confidence WHERE id = :id"
    )
    after, done = 0, 0
    while True:
        rows = bind.execute(select, {"after": after, "n": BATCH}).all()
        if not rows:
            break
        values = []
        for doc_id, title, body in rows:
            guess = detect_language(f"{title}\n{body}")
            values.append({"id": doc_id, "language": guess.code, "confidence": guess.confidence})
        bind.execute(update, values)
        after, done = rows[-1][0], done + len(rows)
        logger.info("identified the language of %d documents", done)


def downgrade() -> None:
    op.drop_column("documents", "language_confidence")
