"""The ingest job: JSONL or CSV files of documents -> PostgreSQL, idempotently."""
