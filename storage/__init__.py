"""Durable state: the only package that knows SQL, Alembic migrations, Parquet schemas and snapshot files."""
