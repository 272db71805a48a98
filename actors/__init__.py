"""Stateful services: a plain class each, plus a thin Ray actor shell."""
