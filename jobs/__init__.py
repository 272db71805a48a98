"""Ray Data jobs. Each is ``python -m jobs.<name>`` and works under ``ray job submit --working-dir .``."""
