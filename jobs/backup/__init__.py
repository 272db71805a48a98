"""The backup job: ``python -m jobs.backup DEST --keep N`` (`pulse backup`, storage.backups)."""
