"""Stop one local Ray node, the one `pulse up` started, and nothing else.

`ray stop` stops every Ray process on the machine: another user's cluster, a test session, a notebook's
``ray.init()``. `pulse down` stops only the node whose GCS listens on the port `pulse up` gave it:

- its GCS server is the process started with ``--gcs_server_port=<port>``; its command line names the
  node's session (``--session-name=session_...``), which every process of that node carries in its
  command line (log and socket paths under the session folder) unless it renamed itself;
- processes that name the node only by address (``--address=<ip>:<port>``, the Ray client server;
  ``--gcs-address=<ip>:<port>``) belong to it too;
- workers and agents rename themselves (``ray::IDLE``, ``ray::DashboardAgent``) but are children of the
  raylet, so every descendant of a process found above is included (Serve's proxies, HAProxy).

They get SIGTERM, then SIGKILL after a grace period, in `ray stop`'s order (``stop_node``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

#: Arguments that name a GCS address (``<ip>:<port>``) in the command lines of Ray's processes.
ADDRESS_FLAGS = ("--address=", "--gcs-address=", "--gcs_address=")


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return list(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def sessions_of(port: int, cmdlines: list[list[str]]) -> set[str]:
    """Session names of the GCS servers listening on ``port`` (one, unless the node is half stopped)."""
    found: set[str] = set()
    for args in cmdlines:
        if f"--gcs_server_port={port}" in args:
            found.update(a.split("=", 1)[1] for a in args if a.startswith("--session-name="))
    return found


def belongs(args: list[str], port: int, sessions: set[str]) -> bool:
    """Whether a command line is one of the node's own processes (not a descendant)."""
    if f"--gcs_server_port={port}" in args:
        return True
    suffix = f":{port}"
    for arg in args:
        if arg.startswith(ADDRESS_FLAGS) and arg.endswith(suffix):
            return True
        if any(session in arg for session in sessions):
            return True
    return False


def node_processes(port: int) -> list[psutil.Process]:
    """Every process of the local Ray node whose GCS listens on ``port``, descendants included; never
    this process."""
    procs = list(psutil.process_iter())
    cmdlines = [_cmdline(p) for p in procs]  # each read once from /proc
    sessions = sessions_of(port, cmdlines)
    roots = [p for p, args in zip(procs, cmdlines, strict=True) if belongs(args, port, sessions)]
    found = {p.pid: p for p in roots}
    for root in roots:
        try:
            for child in root.children(recursive=True):
                found.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            continue
    found.pop(os.getpid(), None)
    return list(found.values())


def _terminate(procs: list[psutil.Process], grace_s: float) -> None:
    """SIGTERM, then SIGKILL what is still alive after ``grace_s``."""
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        logger.warning("Ray process %s did not stop on SIGTERM in %.0f s; killing it", proc.pid, grace_s)
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=5)


def _name(proc: psutil.Process) -> str:
    try:
        return str(proc.name())
    except psutil.Error:
        return ""


def stop_node(port: int, *, grace_s: float = 16.0, current_cluster_file: Path | None = None) -> int:
    """Stop the local Ray node on GCS port ``port``; the number of processes stopped.

    In `ray stop`'s order, each step given a third of ``grace_s``: the raylet first (its agents share its
    fate and would complain if it outlived them), then everything else, the GCS server last. When
    ``current_cluster_file`` (Ray's ``ray_current_cluster``) points at that node it is removed, as
    `ray stop` does, so ``address="auto"`` no longer finds it."""
    procs = node_processes(port)
    steps: dict[str, list[psutil.Process]] = {"raylet": [], "rest": [], "gcs_server": []}
    for proc in procs:
        steps.get(_name(proc), steps["rest"]).append(proc)
    for step in steps.values():  # in ray stop's order
        _terminate(step, grace_s / 3)
    if current_cluster_file is not None:
        try:
            if current_cluster_file.read_text().strip().endswith(f":{port}"):
                current_cluster_file.unlink()
        except OSError:
            pass
    return len(procs)
