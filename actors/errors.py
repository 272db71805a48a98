"""Errors raised by Pulse's actors.

Hierarchy::

    ActorError
    ├── IndexNotReady        the index is still loading from storage (retry later)
    └── DimensionMismatch    query vectors do not have the index's dimension
"""

from __future__ import annotations


class ActorError(Exception):
    """Base class of every actor error."""


class IndexNotReady(ActorError):
    def __init__(self, model_id: int) -> None:
        self.model_id = model_id
        super().__init__(f"the vector index of model {model_id} is still loading; retry in a few seconds")


class DimensionMismatch(ActorError):
    def __init__(self, expected: int, got: int) -> None:
        self.expected = expected
        self.got = got
        super().__init__(f"query vectors have dimension {got}, the index expects {expected}")
