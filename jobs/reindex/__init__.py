"""``python -m jobs.reindex``: rebuild the vector index shards and snapshots (cluster.top.reindex_job)."""
