"""The embedding job: documents lacking vectors for the active model -> vector Parquet files + manifest."""
