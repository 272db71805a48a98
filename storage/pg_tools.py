"""PostgreSQL's client programs (``pg_dump``, ``pg_restore``): finding one that fits, and running it.

A custom-format dump can be read only by a ``pg_restore`` at least as new as the ``pg_dump`` that wrote
it, and ``pg_dump`` refuses a server newer than itself ("server version mismatch"). So a tool is chosen
per server: the oldest one whose major version is at least the one needed (the server's, or for
``pg_restore`` also the dump's), among, in order, a folder given by the caller (``--pg-bin``), the
Debian/Ubuntu installs ``/usr/lib/postgresql/<major>/bin``, the binaries the embedded server ships
(``pgserver``'s ``pginstall/bin``, PostgreSQL 16) and the ``PATH``. When none is new enough,
``PgToolMissing`` says which version to install. Here: the local server is PostgreSQL 15
(``/usr/lib/postgresql/15/bin``), the embedded one 16 (its own binaries).

The connection is passed through libpq's environment (``PGHOST``, ``PGPASSWORD``...), never on the
command line, so a password does not show in the process list.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url

from storage.database import normalize_url
from storage.errors import PgToolMissing

logger = logging.getLogger(__name__)

#: Where Debian and Ubuntu install each major version's client programs.
DEBIAN_PG_LIB = Path("/usr/lib/postgresql")

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class PgTool:
    """One client program: its path, major version and full version text."""

    path: Path
    major: int
    version: str


def server_major(version_num: int) -> int:
    """The major version of ``server_version_num`` (150020 -> 15; 90624 -> 9)."""
    return version_num // 10000


def parse_tool_version(text: str) -> tuple[int, str] | None:
    """``(major, "15.20")`` from ``pg_dump --version`` output, or ``None`` when it is not one."""
    match = _VERSION.search(text)
    if match is None:
        return None
    major = int(match.group(1))
    return major, f"{major}.{match.group(2) or 0}"


def _candidate_dirs(extra: Path | None) -> list[Path]:
    dirs: list[Path] = []
    if extra is not None:
        dirs.append(extra)
    if DEBIAN_PG_LIB.is_dir():
        dirs.extend(sorted((p / "bin" for p in DEBIAN_PG_LIB.iterdir()), key=str))
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        dirs.extend(Path(loc) / "pginstall" / "bin" for loc in spec.submodule_search_locations)
    return dirs


def find_tools(name: str, *, extra_dir: Path | None = None) -> list[PgTool]:
    """Every runnable ``name`` found (each path once), with its version."""
    paths = [d / name for d in _candidate_dirs(extra_dir)]
    on_path = shutil.which(name)
    if on_path:
        paths.append(Path(on_path))
    tools: list[PgTool] = []
    seen: set[Path] = set()
    for path in paths:
        if not path.is_file() or path.resolve() in seen:
            continue
        seen.add(path.resolve())
        try:
            out = subprocess.run(
                [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
            ).stdout
        except OSError:
            continue
        parsed = parse_tool_version(out)
        if parsed is not None:
            tools.append(PgTool(path=path, major=parsed[0], version=parsed[1]))
    return tools


def choose_tool(tools: Sequence[PgTool], *, name: str, at_least: int) -> PgTool:
    """The oldest tool of major version ``at_least`` or newer (the closest to the server)."""
    fitting = sorted((t for t in tools if t.major >= at_least), key=lambda t: t.major)
    if not fitting:
        raise PgToolMissing(name, at_least, [f"{t.path} ({t.version})" for t in tools])
    return fitting[0]


def libpq_env(url: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a client program to reach the URL's database (``PGHOST``...)."""
    parsed = make_url(normalize_url(url))
    env = dict(os.environ if base is None else base)
    for key in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSERVICE"):
        env.pop(key, None)
    host = parsed.host or parsed.query.get("host")
    values = {
        "PGHOST": host if isinstance(host, str) else None,
        "PGPORT": str(parsed.port) if parsed.port else None,
        "PGUSER": parsed.username,
        "PGPASSWORD": parsed.password,
        "PGDATABASE": parsed.database,
    }
    env.update({k: str(v) for k, v in values.items() if v not in (None, "")})
    return env


class PgCommandFailed(RuntimeError):
    """A client program exited non-zero; ``stderr`` holds the end of what it said."""

    def __init__(self, tool: PgTool, returncode: int, stderr: str) -> None:
        self.tool = tool
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{tool.path.name} {tool.version} exited with {returncode}: {stderr}")


def run_tool(tool: PgTool, args: Sequence[str], *, url: str) -> None:
    """Run ``tool args...`` against the URL's database; ``PgCommandFailed`` with its stderr on failure."""
    logger.info("running %s %s", tool.path, " ".join(args))
    proc = subprocess.run(
        [str(tool.path), *args], env=libpq_env(url), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise PgCommandFailed(tool, proc.returncode, tail)
    if proc.stderr.strip():
        logger.info("%s said: %s", tool.path.name, proc.stderr.strip()[-2000:])
