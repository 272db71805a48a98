"""A private PostgreSQL server for one test: ``initdb`` + ``pg_ctl`` in a temporary folder on a free port, so
a test may stop and start it (the shared server on 127.0.0.1:5432 is never touched).

Debian's PostgreSQL 15 binaries are used when installed, else the ones bundled with ``pgserver``. PostgreSQL
refuses to run as root: under root the folder is handed to the ``postgres`` system user (Debian's) and the
binaries run as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cluster.top.serve_config import free_port

DEBIAN_BIN = Path("/usr/lib/postgresql/15/bin")


def _bin_dir() -> Path:
    if (DEBIAN_BIN / "pg_ctl").exists():
        return DEBIAN_BIN
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


@dataclass
class PrivatePostgres:
    """One server: its data folder, port and the ``postgres`` superuser's URL of a database on it."""

    data: Path
    port: int
    bin_dir: Path
    run_as: str | None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        assert proc.returncode == 0, f"{' '.join(cmd)}: rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data / "db"), "-o", options, "-w", "-t", "60", "start", "-l",
                  str(self.data / "server.log"))  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data / "db"), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        cmd = [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"]
        return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """Initialise and start a server; stop it and remove its folder afterwards."""
    run_as = "postgres" if os.geteuid() == 0 else None
    data = Path(tempfile.mkdtemp(prefix="ppg-", dir="/tmp"))  # short: unix socket paths are limited
    if run_as:
        user = pwd.getpwnam(run_as)
        os.chown(data, user.pw_uid, user.pw_gid)
    server = PrivatePostgres(data=data, port=free_port(), bin_dir=_bin_dir(), run_as=run_as)
    try:
        server._run("initdb", "-D", str(data / "db"), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                    "--no-sync", timeout_s=120)  # fmt: skip
        server.start()
        deadline = time.monotonic() + 30
        while not server.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        yield server
    finally:
        if server.running():
            server.stop("immediate")
        shutil.rmtree(data, ignore_errors=True)
