"""Reading a platform's database for comparisons (backup drills): row counts of every table, ids."""

from __future__ import annotations

from sqlalchemy import text

from storage.database import make_engine


def table_counts(url: str) -> dict[str, int]:
    """``table -> rows`` for every table of the public schema."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            names = list(
                conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
                ).scalars()
            )
            return {n: conn.execute(text(f'SELECT count(*) FROM "{n}"')).scalar_one() for n in names}
    finally:
        engine.dispose()


def ids(url: str, table: str) -> list[int]:
    """The ``id`` column of a table, sorted."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(f'SELECT id FROM "{table}" ORDER BY id')).scalars())
    finally:
        engine.dispose()
