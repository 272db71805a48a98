"""The profile rebuild job: the profile book rebuilt from every stored interaction event, one Ray task
per group of subjects (``build``), merged and snapshotted by ``cluster.top.profiles_job``."""
