"""`pulse cms admin`: restore admin access to the CMS from a shell.

The API refuses to demote, deactivate or delete the last active admin, but access can still be lost
(a forgotten password, a departed admin, an edited database). Whoever has shell access and the
platform's database settings can then make a user an active admin with a new password: the user is
found by address (or created with ``--create``), given the admin role, activated, and its refresh tokens
are revoked. The change is one transaction with its audit row, whose actor is ``cli:<OS user>``.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import secrets
import sys
from dataclasses import dataclass
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from cluster.ground.passwords import PasswordPolicyError, hash_password
from cluster.top.cms_scheduler import scheduler_command
from cluster.top.commands.env import CommandEnv, pass_env
from cluster.top.entry import InOrderGroup, user_error
from storage.cms_audit import record_audit
from storage.cms_users import ADMIN_ROLE, RefreshTokenRepository, UserRepository, UserRow
from storage.database import make_async_engine
from storage.errors import CmsNotFound

#: Random bytes of a generated password (``secrets.token_urlsafe``: 24 characters).
GENERATED_PASSWORD_BYTES = 18
#: The audit action of a restore.
RESTORE_ACTION = "user.restore_admin"


@dataclass(frozen=True)
class AdminRestore:
    """What ``restore_admin`` did: the user now, the user before (``None``: created) and how many
    refresh tokens it revoked."""

    user: UserRow
    before: UserRow | None
    revoked_tokens: int

    def line(self) -> str:
        user = self.user
        if self.before is None:
            return f"created CMS user {user.id} {user.email} as an active admin"
        was = f"{self.before.role}, {'active' if self.before.active else 'inactive'}"
        return (
            f"CMS user {user.id} {user.email} is an active admin (was {was}); password reset, "
            f"{self.revoked_tokens} refresh token(s) revoked"
        )


async def restore_admin(
    session: AsyncSession, *, email: str, password_hash: str, actor: str, create: bool, display_name: str
) -> AdminRestore:
    """Make the user with ``email`` an active admin with ``password_hash``, revoke its refresh tokens and
    audit it, in the caller's transaction. ``CmsNotFound`` if no user has the address and not ``create``."""
    users = UserRepository(session)
    before = await users.by_email(email)
    if before is None:
        if not create:
            raise CmsNotFound("user", email)
        user = await users.create(email, display_name, password_hash, ADMIN_ROLE)
        revoked = 0
    else:
        user = await users.update(before.id, role=ADMIN_ROLE, active=True)
        await users.set_password_hash(user.id, password_hash)
        revoked = await RefreshTokenRepository(session).revoke_all(user.id)
    await record_audit(
        session,
        actor=actor,
        action=RESTORE_ACTION,
        target=f"user:{user.id}",
        reason="pulse cms admin: " + ("created" if before is None else "new password, sessions ended"),
        before=None if before is None else {"role": before.role, "active": before.active},
        after={"email": user.email, "role": user.role, "active": user.active},
    )
    return AdminRestore(user, before, revoked)


def cli_actor() -> str:
    """``cli:<OS user>``: the audit actor of a shell command (the uid where the user has no name)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        name = str(os.getuid())
    return f"cli:{name}"


async def _restore(database_url: str, **kwargs: Any) -> AdminRestore:
    engine = make_async_engine(database_url, pool_size=1)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
            return await restore_admin(session, **kwargs)
    finally:
        await engine.dispose()


@click.group(
    "cms",
    cls=InOrderGroup,
    short_help="CMS from a shell: restore an admin, start the scheduler",
)
def cms() -> None:
    """CMS operations for whoever has shell access: restore an admin, start the scheduler."""


@cms.command("admin", short_help="make a user an active admin with a new password (audited)")
@click.option("--email", required=True, help="the user's address")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="read the new password from standard input (default: generate one and print it once)",
)
@click.option("--create", is_flag=True, help="create the user if no user has this address")
@click.option(
    "--name", default="Admin", show_default=True, help="display name of a user created with --create"
)
@pass_env
def admin(env: CommandEnv, *, email: str, password_stdin: bool, create: bool, name: str) -> int:
    """Give a CMS user the admin role, activate it, set a new password and end its sessions.

    The user is found by address (or created with --create); the change is one transaction with its
    audit row, whose actor is cli:<OS user>.
    """
    database_url = env.database().url
    generated = not password_stdin
    password = (
        secrets.token_urlsafe(GENERATED_PASSWORD_BYTES) if generated else sys.stdin.read().rstrip("\r\n")
    )
    try:
        password_hash = hash_password(password)
    except PasswordPolicyError as exc:
        return user_error(f"the password from standard input is refused: {exc}")
    actor = cli_actor()
    try:
        done = asyncio.run(
            _restore(
                database_url,
                email=email,
                password_hash=password_hash,
                actor=actor,
                create=create,
                display_name=name,
            )
        )
    except CmsNotFound:
        return user_error(f"no CMS user has the address {email!r}; check it, or add --create to create one")
    console = env.console
    console.print(done.line(), markup=False)
    if generated:
        console.print(f"new password (shown once, store it now): {password}", markup=False)
    console.print(f"audited as {RESTORE_ACTION} by {actor}", markup=False)
    return 0


cms.add_command(scheduler_command)
