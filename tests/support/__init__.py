"""Reusable test fixtures that are more than a fixture: a real local web site serving the shared data."""
