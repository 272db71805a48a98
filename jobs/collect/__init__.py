"""The collect job: sources -> polite fetching -> extraction -> deduplicated documents."""
