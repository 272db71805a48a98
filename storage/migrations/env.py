"""Alembic environment: runs migrations on the connection or URL that ``storage.migrate`` passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

import storage.cms_models  # noqa: F401  (registers the CMS tables on Base.metadata)
from storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("storage.migrate passes sqlalchemy.url; run `pulse migrate`")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            # One migrator at a time: concurrent `pulse up` / test sessions wait here.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7426117)")
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline migrations are not supported; run `pulse migrate` against a database")
run_migrations_online()
