"""The trends API: stories (``/v1/trends``) and topics (``/v1/topics``) read from PostgreSQL."""
