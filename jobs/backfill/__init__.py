"""``python -m jobs.backfill``: load a historical dump and embed it (cluster.top.commands.backfill)."""
