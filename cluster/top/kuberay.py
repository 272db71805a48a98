"""The KubeRay manifests in ``cluster/kuberay/``: keep the RayService's Serve config in step, aim a RayJob.

``cluster/kuberay/rayservice.yaml`` embeds the committed Serve config (``serve_apps/serve_config.yaml``) as
the literal block ``serveConfigV2``. ``sync_rayservice`` rewrites that block, and nothing else, from the
committed file: the manifest's comments and layout stay as written (it is edited as text, block by
indentation, since no comment-preserving YAML library is installed). ``embedded_serve_config`` reads the
block back, parsed; a unit test compares it with the committed file.

A RayJob that runs on a long-lived cluster names that RayCluster in ``clusterSelector`` (``ray.io/cluster``).
A RayService's cluster has a generated name that changes with each zero-downtime upgrade, so
``aim_rayjob`` fills the current name into a RayJob manifest at submit time (again as text).

    python -m cluster.top.kuberay sync [--check]
    python -m cluster.top.kuberay rayjob cluster/kuberay/rayjob-embed.yaml --cluster NAME \
        | kubectl create -f -
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import yaml

#: The repository root (this file is ``cluster/top/kuberay.py``).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The committed Serve config the RayService embeds.
SERVE_CONFIG = REPO_ROOT / "serve_apps" / "serve_config.yaml"
#: The RayService manifest.
RAYSERVICE = REPO_ROOT / "cluster" / "kuberay" / "rayservice.yaml"

#: ``serveConfigV2: |`` (a literal block, optionally with a chomping indicator) on a line of its own.
_BLOCK_KEY = re.compile(r"^(?P<indent> *)serveConfigV2: *\|[-+]? *(?:#.*)?$")
#: The ``ray.io/cluster:`` entry of a RayJob's ``clusterSelector``.
_CLUSTER_KEY = re.compile(r"^(?P<head> *ray\.io/cluster: *)(?P<value>[^#\n]*?)(?P<tail> *(?:#.*)?)$", re.M)
#: A Kubernetes object name usable as a RayCluster name (DNS-1035 label, at most 53 characters).
_CLUSTER_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,51}[a-z0-9])?$")


class KubeRayManifestError(ValueError):
    """A manifest in ``cluster/kuberay/`` lacks what this module edits, or an argument is unusable."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block_span(lines: list[str], path: Path) -> tuple[int, int, int]:
    """(key line, first line after the block, key indentation) of the one ``serveConfigV2`` literal block."""
    keys = [i for i, line in enumerate(lines) if _BLOCK_KEY.match(line)]
    if len(keys) != 1:
        raise KubeRayManifestError(
            path,
            f"expected exactly one `serveConfigV2: |` line, found {len(keys)}; restore the literal block "
            "under spec (see cluster/kuberay/README.md)",
        )
    start = keys[0]
    match = _BLOCK_KEY.match(lines[start])
    assert match is not None
    indent = len(match.group("indent"))
    end = start + 1
    # The block holds every following line that is blank or indented deeper than its key.
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > indent):
        end += 1
    # Blank lines at the end separate the block from what follows: they are not part of it.
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return start, end, indent


def embedded_serve_config(path: Path = RAYSERVICE) -> dict[str, Any]:
    """The Serve config a RayService manifest carries in ``spec.serveConfigV2``, parsed."""
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    services = [d for d in docs if isinstance(d, dict) and d.get("kind") == "RayService"]
    if len(services) != 1:
        raise KubeRayManifestError(path, f"expected one RayService document, found {len(services)}")
    text = services[0].get("spec", {}).get("serveConfigV2")
    if not isinstance(text, str) or not text.strip():
        raise KubeRayManifestError(path, "spec.serveConfigV2 is missing or not a YAML string")
    config = yaml.safe_load(text)
    if not isinstance(config, dict):
        raise KubeRayManifestError(path, "spec.serveConfigV2 does not hold a YAML mapping")
    return config


def render_block(serve_config_text: str, indent: int) -> list[str]:
    """The lines of a literal block holding ``serve_config_text``, each indented by ``indent`` spaces."""
    lines = serve_config_text.rstrip("\n").splitlines()
    first = next((line for line in lines if line.strip()), "")
    if not first:
        raise KubeRayManifestError("serve config", "is empty")
    if first.startswith((" ", "\t")):
        raise KubeRayManifestError(
            "serve config", "its first line is indented; a literal block needs it at column 0"
        )
    if any("\t" in line[: len(line) - len(line.lstrip())] for line in lines):
        raise KubeRayManifestError("serve config", "indents with tabs, which YAML does not allow")
    pad = " " * indent
    return [f"{pad}{line}" if line.strip() else "" for line in lines]


def synced_rayservice(serve_config_text: str, rayservice_text: str, *, path: Path = RAYSERVICE) -> str:
    """``rayservice_text`` with its ``serveConfigV2`` block replaced by ``serve_config_text``."""
    lines = rayservice_text.splitlines()
    start, end, indent = _block_span(lines, path)
    new = [*lines[: start + 1], *render_block(serve_config_text, indent + 2), *lines[end:]]
    return "\n".join(new) + "\n"


def sync_rayservice(serve_config_path: Path = SERVE_CONFIG, rayservice_path: Path = RAYSERVICE) -> bool:
    """Rewrite the RayService manifest's ``serveConfigV2`` block from the Serve config file; True if it
    changed. Only that block is touched: comments and keys elsewhere stay as they are."""
    old = rayservice_path.read_text(encoding="utf-8")
    new = synced_rayservice(serve_config_path.read_text(encoding="utf-8"), old, path=rayservice_path)
    if new == old:
        return False
    rayservice_path.write_text(new, encoding="utf-8")
    return True


def aim_rayjob(rayjob_text: str, cluster: str, *, path: Path | str = "RayJob") -> str:
    """``rayjob_text`` with its ``clusterSelector`` set to the RayCluster ``cluster`` (comments kept)."""
    if not _CLUSTER_NAME.match(cluster):
        raise KubeRayManifestError(
            path,
            f"{cluster!r} is not a RayCluster name (lower-case letters, digits and '-', at most 53); "
            "pass the name `kubectl get rayclusters` shows",
        )
    aimed, count = _CLUSTER_KEY.subn(lambda m: f"{m['head']}{cluster}{m['tail']}", rayjob_text)
    if count != 1:
        raise KubeRayManifestError(path, f"expected one `ray.io/cluster:` selector line, found {count}")
    return aimed


@click.group("kuberay")
def main() -> None:
    """The KubeRay manifests in cluster/kuberay/."""


@main.command("sync")
@click.option(
    "--serve-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=SERVE_CONFIG,
    show_default=True,
    help="the Serve config to embed",
)
@click.option(
    "--rayservice",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=RAYSERVICE,
    show_default=True,
    help="the RayService manifest to update",
)
@click.option("--check", is_flag=True, help="change nothing; exit 1 if the manifest is out of step")
def sync_command(serve_config: Path, rayservice: Path, check: bool) -> None:
    """Copy the Serve config into the RayService's serveConfigV2 block (nothing else changes)."""
    try:
        if check:
            current = rayservice.read_text(encoding="utf-8")
            wanted = synced_rayservice(serve_config.read_text(encoding="utf-8"), current, path=rayservice)
            if wanted != current:
                raise click.ClickException(
                    f"{rayservice}: serveConfigV2 differs from {serve_config}; "
                    "run `python -m cluster.top.kuberay sync`"
                )
            click.echo(f"{rayservice}: serveConfigV2 matches {serve_config}")
            return
        changed = sync_rayservice(serve_config, rayservice)
    except KubeRayManifestError as err:
        raise click.ClickException(str(err)) from err
    verb = "updated from" if changed else "already matches"
    click.echo(f"{rayservice}: serveConfigV2 {verb} {serve_config}")


@main.command("rayjob")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--cluster",
    required=True,
    help="RayCluster to run on, e.g. $(kubectl get rayservice pulse-api "
    "-o jsonpath='{.status.activeServiceStatus.rayClusterName}')",
)
def rayjob_command(manifest: Path, cluster: str) -> None:
    """Print MANIFEST with its clusterSelector set to CLUSTER (pipe it to `kubectl create -f -`)."""
    try:
        click.echo(aim_rayjob(manifest.read_text(encoding="utf-8"), cluster, path=manifest), nl=False)
    except KubeRayManifestError as err:
        raise click.ClickException(str(err)) from err


if __name__ == "__main__":
    main()
