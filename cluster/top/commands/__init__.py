"""The `pulse` commands that run jobs (ingest, embed, collect), each defined once.

The `pulse` group mounts them (cluster.top.cli) and ``python -m jobs.<name>`` runs the same command object
(jobs/<name>/__main__.py), so both have the same options, output and exit codes.
"""
