"""What `pulse up` started and chose, recorded in ``<var_dir>/platform.json``.

`pulse down` reads it to stop exactly what `up` started; every other command reads it to use the database
and the Ray cluster `up` chose (``cluster.top.targets``). The file may hold a database URL with its password,
so it is written readable by its owner only.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ray._common.utils import get_ray_address_file

#: File name of the record, inside ``PULSE_VAR_DIR``.
STATE_FILE = "platform.json"


@dataclass
class PlatformState:
    ray_started: bool = False
    ray_port: int | None = None  # GCS port of the node `pulse up` started; `pulse down` stops only it
    embedded_db_dir: str | None = None
    api_url: str = ""
    dashboard_url: str | None = None
    # The database `pulse up` chose (kept after `pulse down`: the data lives there).
    database_url: str | None = None
    database_kind: str | None = None
    # The Ray cluster `pulse up` started or joined (cleared by `pulse down`), and its RAY_AUTH_MODE.
    ray_address: str | None = None
    ray_auth_mode: str | None = None

    @classmethod
    def load(cls, path: Path) -> PlatformState:
        if not path.exists():
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(json.dumps(asdict(self), indent=2))
        path.chmod(0o600)  # a file written by an older release kept its mode


def state_path(var_dir: Path) -> Path:
    return var_dir / STATE_FILE


def address_answers(address: str, timeout_s: float = 0.5) -> bool:
    """Whether something listens at a Ray address's ``host:port`` (``ray://`` too; "auto" is not checked)."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return True  # "auto" or a name Ray resolves itself: let ray.init say what is wrong
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


#: File where `ray start` records the address of the node it started, by Ray's own rule (``ray`` under
#: RAY_TMPDIR, else TMPDIR, else /tmp; Ray 2.60 keeps the rule in a private module).
RAY_CURRENT_CLUSTER_FILE = Path(get_ray_address_file(None))


def local_ray_address() -> str | None:
    """The GCS address of a local node started by `ray start`, if it answers (checked in milliseconds)."""
    try:
        address = RAY_CURRENT_CLUSTER_FILE.read_text().strip()
    except OSError:
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None
    return address if address_answers(address) else None
