"""The CMS application for tests that talk to it over HTTP: its users, its deployment on the session's
Serve, and logging in (shared by ``tests/e2e/test_cms_api.py`` and ``tests/security/``).

``deploy_cms`` runs the CMS builder as ``pulse up`` does (``cluster.top.serve_config.load_builder``) under a
route prefix of the caller's; the first admin is created by the app itself on the first login
(``admin_email`` / ``admin_password``), the other users by ``create_users`` straight in PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
from ray import serve
from sqlalchemy.ext.asyncio import async_sessionmaker

from cluster.ground.passwords import hash_password
from storage.cms_users import ApiKeyRepository, UserRepository
from storage.database import make_async_engine

#: Every test user's password (the policy wants a few words).
PASSWORD = "correct horse battery"
#: The first admin, created by the app itself on its first login.
ADMIN_EMAIL = "admin@pulse.test"
#: Test users by name -> role ("admin" is the first admin; the others are created in PostgreSQL).
USERS = {
    "admin": "admin",
    "editor": "editor",
    "author": "author",
    "author2": "author",
    "viewer": "viewer",
}


def email(name: str) -> str:
    return ADMIN_EMAIL if name == "admin" else f"{name}@pulse.test"


async def _create_users(url: str, users: Mapping[str, str]) -> None:
    engine = make_async_engine(url, pool_size=1)
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            repo = UserRepository(session)
            for name, role in users.items():
                if name != "admin":
                    await repo.create(email(name), name.title(), hash_password(PASSWORD), role)
    finally:
        await engine.dispose()


def create_users(url: str, users: Mapping[str, str] = USERS) -> None:
    """Every user of ``users`` but the first admin, with ``PASSWORD``."""
    asyncio.run(_create_users(url, users))


async def _create_keys(url: str, roles: Mapping[str, str]) -> dict[str, str]:
    engine = make_async_engine(url, pool_size=1)
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            repo = ApiKeyRepository(session)
            return {name: (await repo.create(name, role, None))[1] for name, role in roles.items()}
    finally:
        await engine.dispose()


def create_keys(url: str, roles: Mapping[str, str]) -> dict[str, str]:
    """API keys by name -> role, made in PostgreSQL; returns name -> the key."""
    return asyncio.run(_create_keys(url, roles))


def cms_args(
    database_url: str, secret: str, storage_uri: str, namespace: str, **extra: Any
) -> dict[str, Any]:
    """The builder arguments every test deployment shares (``extra`` adds or overrides)."""
    return {
        "database_url": database_url,
        "jwt_secret": secret,
        "max_body_bytes": 65_536,
        "storage_uri": storage_uri,
        "namespace": namespace,
        "scheduler_interval_s": 0.5,
        "admin_email": ADMIN_EMAIL,
        "admin_password": PASSWORD,
        **extra,
    }


def deploy_cms(name: str, route_prefix: str, args: dict[str, Any], *, port: int) -> None:
    """Run the CMS application ``name`` at ``route_prefix`` on the session's Serve (started on ``port``)."""
    from cluster.top.serve_config import load_builder

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(load_builder("serve_apps.cms.app:app_builder")(args), name=name, route_prefix=route_prefix)


def login(base: str, name: str, password: str = PASSWORD) -> dict[str, Any]:
    """The token pair of user ``name`` (``POST {base}/auth/login``)."""
    resp = httpx.post(f"{base}/auth/login", json={"email": email(name), "password": password}, timeout=30)
    assert resp.status_code == 200, resp.text
    tokens: dict[str, Any] = resp.json()
    return tokens


def access_tokens(base: str, names: Mapping[str, str] = USERS) -> dict[str, str]:
    """Each user's access token, by name."""
    return {name: login(base, name)["access_token"] for name in names}


def publish_items(base: str, titles: list[str], *, password: str = PASSWORD) -> list[int]:
    """Create one English item per title as the configured admin and publish it; the items' ids."""
    headers = {"Authorization": f"Bearer {login(base, 'admin', password)['access_token']}"}
    ids = []
    for title in titles:
        item = httpx.post(f"{base}/items", json={"title_en": title}, headers=headers, timeout=30)
        assert item.status_code == 201, item.text
        moved = httpx.post(
            f"{base}/items/{item.json()['id']}/transition",
            json={"to": "published"},
            headers=headers,
            timeout=30,
        )
        assert moved.status_code == 200, moved.text
        ids.append(item.json()["id"])
    return ids
