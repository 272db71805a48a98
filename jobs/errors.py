"""Errors raised by jobs.

Hierarchy::

    JobError
    ├── ModelNotFound        the embedding model name or folder cannot be resolved (nothing downloaded)
    ├── RecipeError          a text recipe (fields, chunking) is invalid for the model
    ├── EmbedBusy            another embedding run holds the model's lock
    ├── InputFileError       an ingest file cannot be read at all (bad records are quarantined instead)
    ├── PlacementError       a job's smallest set of tasks and actors fits no node's free resources
    └── CollectError         the collect job (jobs.collect.errors)
"""

from __future__ import annotations


class JobError(Exception):
    """Base class of every job error."""


class ModelNotFound(JobError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(
            f"embedding model {name!r} not found: {reason}. Set PULSE_MODEL__NAME to a local model folder, "
            "or to 'sentence-transformers/all-MiniLM-L6-v2' for the packaged default."
        )


class InputFileError(JobError):
    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(f"cannot read {path}: {reason}")


class RecipeError(JobError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid text recipe: {reason}")


class PlacementError(JobError):
    """The message (``jobs.placement.refusal``) says what the job needs, what is free, what to change."""

    def __init__(self, job: str, message: str) -> None:
        self.job = job
        super().__init__(message)


class EmbedBusy(JobError):
    def __init__(self, model_id: int) -> None:
        self.model_id = model_id
        super().__init__(
            f"another embedding run is in progress for model {model_id}; wait for it to finish "
            "(`pulse models list` shows its progress; `pulse embed --wait SECONDS` waits for it) "
            "or stop it first"
        )
