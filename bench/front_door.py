"""Shared by the benchmarks: Pulse through its front door, as a user runs it.

``Platform`` is a private installation on this machine: a fresh, empty database on the local PostgreSQL
server (``pulse_bench_<random>``, given to Pulse as ``PULSE_DATABASE__URL``; `pulse up` migrates it),
its own var folder and storage folder, and free ports for Serve, HAProxy, the Ray head and its
dashboard, so it runs beside other Pulse or Ray instances without touching them. Every step is a
``pulse`` command in a subprocess (``python -m cluster.top.cli``, what the ``pulse`` console script runs)
with that environment::

    with Platform(keep=False) as p:
        p.pulse("up", "--no-sample")          # own Ray node, Serve on p.api_url
        p.pulse("ingest", "corpus.jsonl", "--source", "scifact")
        p.pulse("embed")
        httpx.get(f"{p.api_url}/v1/search", params={"q": "..."})
    # `pulse down` (only the node `pulse up` started), then the database and folders are removed

Everything is passed explicitly by environment, so the CLI's own choices (which database, which Ray)
do not matter:

- ``RAY_TMPDIR`` is a private folder: `pulse up` then finds no running local node (Ray's
  ``ray_current_cluster`` file lives there) and starts its own, whose sessions and logs stay apart.
- Commands after `pulse up` join that node by ``PULSE_RAY__ADDRESS`` (its GCS address) with
  ``RAY_AUTH_MODE=token`` (Ray 2.60 turns token authentication on, and only ``address="auto"`` finds
  the token by itself); `pulse up` itself is run without an address (with one, it joins instead of
  starting a node). The commands would also find the node `pulse up` recorded in the var folder; the
  address keeps the benchmark independent of that choice. (Pulse's own check for a `ray start` node,
  ``cluster.top.platform_state.RAY_CURRENT_CLUSTER_FILE``, reads ``$RAY_TMPDIR/ray_current_cluster`` where
  Ray writes ``$RAY_TMPDIR/ray/ray_current_cluster``.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import ROOT

#: Seconds one `pulse` command may take before the benchmark gives up on it.
COMMAND_TIMEOUT_S = 3600


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def local_database_url(name: str) -> str:
    """A database URL for ``name``: on PULSE_DATABASE__URL's server if set, else the local server
    (127.0.0.1:5432, trust auth) that Pulse itself would use."""
    from cluster.ground.settings import DatabaseSettings
    from cluster.top.database import local_server_url

    if os.environ.get("PULSE_DATABASE__URL"):
        from sqlalchemy import make_url

        url = make_url(os.environ["PULSE_DATABASE__URL"]).set(database=name)
        return str(url.render_as_string(hide_password=False))
    return local_server_url(DatabaseSettings(), name)


class CommandFailed(RuntimeError):
    """A `pulse` command exited non-zero (or ran out of time); the message ends with its output."""


class Platform:
    """A private Pulse installation driven through `pulse` commands (see the module docstring)."""

    def __init__(
        self,
        *,
        keep: bool = False,
        num_cpus: int | None = None,
        include_dashboard: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        from cluster.top.serve_config import free_port

        self.keep = keep
        self.name = f"pulse_bench_{uuid.uuid4().hex[:8]}"
        self.database_url = local_database_url(self.name)
        self.folder = Path(tempfile.mkdtemp(prefix="pulse-bench-fd-"))
        # Short: Ray's unix sockets live under <RAY_TMPDIR>/ray/session_<date>_<pid>/sockets (107 chars max).
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="pb-", dir="/tmp"))
        self.serve_port = free_port()
        self.head_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.serve_port}"
        self.up_started = False
        self.node_up = False
        self.commands = 0
        self.timings: dict[str, float] = {}
        base = {
            k: v for k, v in os.environ.items() if not k.startswith("PULSE_") and k not in ("RAY_ADDRESS",)
        }
        self.env: dict[str, str] = {
            **base,
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "RAY_TMPDIR": str(self.ray_tmp),
            "PULSE_DATABASE__URL": self.database_url,
            "PULSE_VAR_DIR": str(self.folder / "var"),
            "PULSE_STORAGE__URI": str(self.folder / "storage"),
            "PULSE_SERVE__PORT": str(self.serve_port),
            "PULSE_SERVE__HAPROXY_STATS_PORT": str(free_port()),
            "PULSE_SERVE__HAPROXY_METRICS_PORT": str(free_port()),
            "PULSE_RAY__HEAD_PORT": str(self.head_port),
            "PULSE_RAY__INCLUDE_DASHBOARD": "true" if include_dashboard else "false",
            "PULSE_RAY__DASHBOARD_PORT": str(free_port()),
            "PULSE_RAY__DASHBOARD_AGENT_PORT": str(free_port()),
            **({"PULSE_RAY__NUM_CPUS": str(num_cpus)} if num_cpus else {}),
            **(env or {}),
        }
        from storage.database import ensure_database

        ensure_database(self.database_url)  # empty: as a user's database server gives it to Pulse

    # ------------------------------------------------------------------------------------------ commands
    def pulse(self, *args: str, timeout_s: float = COMMAND_TIMEOUT_S, check: bool = True) -> str:
        """Run ``pulse ARGS`` with the platform's environment; its stdout (progress goes to stderr).
        Commands after `pulse up` join the node it started."""
        env = dict(self.env)
        if self.node_up and args[0] != "up":
            env["PULSE_RAY__ADDRESS"] = f"127.0.0.1:{self.head_port}"
            env["RAY_AUTH_MODE"] = "token"  # an explicit address does not pick up the node's token alone
        self.commands += 1
        logs = self.folder / "logs"
        logs.mkdir(exist_ok=True)
        out_path = logs / f"{self.commands:02d}-{args[0]}.out"
        err_path = logs / f"{self.commands:02d}-{args[0]}.err"
        log(f"$ pulse {' '.join(args)}  (output in {logs})")
        t0 = time.perf_counter()
        with out_path.open("w") as out, err_path.open("w") as err:
            try:
                code: int | None = subprocess.run(
                    [sys.executable, "-m", "cluster.top.cli", *args],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=err,
                    timeout=timeout_s,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                code = None
        stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
        seconds = time.perf_counter() - t0
        key = args[0] if args[0] != "sources" else f"sources_{args[1]}"
        self.timings[key] = round(self.timings.get(key, 0.0) + seconds, 1)
        for line in stdout.strip().splitlines()[-6:]:
            log(f"  {line}")
        if check and code != 0:
            tail = "\n".join((stdout + stderr).strip().splitlines()[-25:])
            what = f"ran past {timeout_s:.0f} s" if code is None else f"exited {code}"
            raise CommandFailed(f"`pulse {' '.join(args)}` {what}:\n{tail}")
        return stdout

    def up(self, *args: str) -> str:
        """`pulse up ARGS`; the node it starts is stopped by ``close`` (`pulse down`)."""
        self.up_started = True  # from here on `pulse down` must run, even if `up` fails half-way
        out = self.pulse("up", *args)
        self.node_up = True
        return out

    # ------------------------------------------------------------------------------------------- HTTP
    def wait_ready(self, *, documents: int, timeout_s: float = 1800) -> dict[str, Any]:
        """Poll /readyz until the index holds ``documents`` vectors and the keyword index as many."""
        import httpx

        deadline = time.monotonic() + timeout_s
        last: Any = "no answer"
        while time.monotonic() < deadline:
            try:
                resp = httpx.get(f"{self.api_url}/readyz", timeout=10)
                last = resp.json()
                if (
                    resp.status_code == 200
                    and last.get("vectors") == documents
                    and last.get("keyword_documents") == documents
                ):
                    return dict(last)
            except (httpx.HTTPError, ValueError) as exc:
                last = type(exc).__name__
            time.sleep(2)
        raise TimeoutError(
            f"{self.api_url}/readyz did not show {documents} documents in {timeout_s:.0f} s: {last}"
        )

    # ------------------------------------------------------------------------------------- life cycle
    def close(self) -> None:
        from storage.database import drop_database

        if self.up_started:
            try:
                self.pulse("down", timeout_s=300)
            except CommandFailed as exc:
                log(f"pulse down failed; stopping the node on port {self.head_port} directly: {exc}")
                from cluster.ground.local_node import stop_node

                stop_node(self.head_port)
        if self.keep:
            log(
                f"kept: database {self.name}, folder {self.folder}, Ray logs in {self.ray_tmp} "
                f"(environment: PULSE_DATABASE__URL={self.database_url} PULSE_VAR_DIR={self.folder / 'var'})"
            )
            return
        try:
            drop_database(self.database_url)
        except Exception as exc:  # the result is still worth printing
            log(f"could not drop database {self.name}: {exc}")
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
        shutil.rmtree(self.haproxy_folder(), ignore_errors=True)

    def haproxy_folder(self) -> Path:
        """The short folder `pulse up` gives Serve's HAProxy for this var folder
        (cluster.top.serve_config)."""
        from cluster.ground.settings import Settings
        from cluster.top.serve_config import ingress_env

        settings = Settings(_env_file=None, var_dir=Path(self.env["PULSE_VAR_DIR"]))  # type: ignore[call-arg]
        return Path(ingress_env(settings)["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
