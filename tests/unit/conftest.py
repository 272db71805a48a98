"""Unit tests: no Ray, no database, no network. These fixtures make any attempt fail loudly."""

from __future__ import annotations

import socket

import pytest


class ForbiddenInUnitTests(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _no_ray_db_or_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg
    import ray

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise ForbiddenInUnitTests("unit tests may not use Ray, PostgreSQL or the network")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(psycopg, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
