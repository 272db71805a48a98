"""`pulse up`, `pulse down` and `pulse status`: the local platform's life cycle.

`up` starts what is missing (PostgreSQL, a Ray head node with `ray start`), migrates, ingests the sample
corpus, embeds what is not embedded yet, deploys Serve and returns once the API answers, leaving the
platform running in the background. What it started is recorded in ``<var_dir>/platform.json`` so that
`down` stops exactly that, keeping all data.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import ray
from rich.console import Console

from cluster.ground.constants import (
    CMS_APP_NAME,
    CMS_SCHEDULER_NAME,
    INDEX_ACTOR_PREFIX,
    JOB_SCHEDULER_NAME,
    KEYWORD_ACTOR_PREFIX,
    PROFILE_ACTOR_NAME,
    SEARCH_APP_NAME,
    TOPICS_APP_NAME,
    TREND_ACTOR_PREFIX,
    TRENDS_APP_NAME,
)
from cluster.ground.local_node import stop_node
from cluster.ground.runtime import worker_logging
from cluster.ground.settings import Settings
from cluster.top import platform_state
from cluster.top.activation import resume_activations
from cluster.top.cms_scheduler import start_cms_scheduler
from cluster.top.database import DatabaseChoice, stop_embedded
from cluster.top.job_configs import embed_config, embed_target
from cluster.top.job_scheduler import start_job_scheduler
from cluster.top.platform_state import RAY_CURRENT_CLUSTER_FILE, PlatformState, local_ray_address
from cluster.top.serve_config import (
    cms_app_args,
    deploy_cms,
    deploy_search,
    deploy_trends,
    free_port,
    ingress_env,
)
from cluster.top.targets import choose_database, choose_ray
from cluster.top.trends import snapshot_before_stop, start_trends
from jobs.embed.notify import notify_index
from jobs.embed.pipeline import run_embed
from jobs.ingest.loader import ingest_file
from storage.database import make_engine, make_session_factory, session_scope
from storage.documents import DocumentRepository
from storage.embeddings import EmbeddingRepository
from storage.model_registry import ModelRegistry

logger = logging.getLogger(__name__)

#: The bundled demo corpus (HuffPost News Category Dataset 2018, CC BY 4.0).
SAMPLE_CORPUS = (
    Path(__file__).resolve().parents[2] / "jobs" / "ingest" / "sample_data" / "huffpost_2018.jsonl"
)


class PlatformError(Exception):
    """`pulse up` could not finish; the message says what to do."""


def state_path(settings: Settings) -> Path:
    return platform_state.state_path(settings.var_dir)


def api_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.serve.host in ("0.0.0.0", "::") else settings.serve.host
    return f"http://{host}:{settings.serve.port}"


def _ray_executable() -> str:
    candidate = Path(sys.executable).with_name("ray")
    return str(candidate) if candidate.exists() else (shutil.which("ray") or "ray")


def local_ray_running() -> bool:
    return local_ray_address() is not None


def running_address() -> str | None:
    """``"auto"`` when a local `pulse up` cluster runs (so commands join it), else None."""
    return "auto" if local_ray_running() else None


def start_ray_head(settings: Settings) -> None:
    """`ray start --head` with Pulse's settings; the node outlives this process."""
    r = settings.ray
    cmd = [_ray_executable(), "start", "--head", "--disable-usage-stats"]
    cmd += ["--port", str(r.head_port), "--num-cpus", str(r.num_cpus or os.cpu_count() or 1)]
    if r.num_gpus is not None:
        cmd += ["--num-gpus", str(r.num_gpus)]
    if r.object_store_memory_mb:
        cmd += ["--object-store-memory", str(r.object_store_memory_mb * 1024 * 1024)]
    agent_port = r.dashboard_agent_port or free_port()
    cmd += [f"--dashboard-agent-listen-port={agent_port}"]
    if r.include_dashboard:
        cmd += [
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={r.dashboard_port}",
        ]
    else:
        cmd += ["--include-dashboard=false"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **ingress_env(settings)}
    # Jobs submitted to this node run ``python -m jobs.<kind>`` (`pulse submit`): `python` must be this
    # environment's, even when `pulse` was run as .venv/bin/pulse without activating the environment.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise PlatformError(f"`ray start --head` failed (exit {proc.returncode}):\n{tail}")


def wait_ready(url: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(f"{url}/readyz", timeout=5)
            if resp.status_code == 200:
                return dict(resp.json())
            last = f"HTTP {resp.status_code}: {resp.text[:200]}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(1)
    raise PlatformError(f"the API at {url} did not become ready in {timeout_s:.0f} s (last: {last})")


def up(settings: Settings, console: Console, *, ingest_sample: bool = True) -> PlatformState:
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    state = PlatformState.load(state_path(settings))
    started = time.perf_counter()

    db = choose_database(settings, migrate=True)
    console.print(f"[bold]database[/]: {db.describe()} (migrated)")
    if db.kind == "embedded" and db.recorded_in is None:
        state.embedded_db_dir = str(settings.database.embedded_dir.resolve())
    state.database_url, state.database_kind = db.url, db.kind  # later commands use it (cluster.top.targets)
    state.save(state_path(settings))

    if ingest_sample:
        corpus = settings.sample_corpus or SAMPLE_CORPUS
        summary = ingest_file(corpus, database_url=db.url, source_name="huffpost_2018")
        console.print(f"[bold]sample corpus[/]: {summary.line()}")

    if settings.ray.address:
        ray.init(
            address=settings.ray.address,
            namespace=settings.ray.namespace,
            logging_level=logging.WARNING,
            log_to_driver=False,
            **worker_logging(settings.ray.address, settings.log_level),
        )
        console.print(f"[bold]ray[/]: joined {settings.ray.address}")
    else:
        if not local_ray_running():
            console.print("[bold]ray[/]: starting a local head node (`ray start --head`)...")
            start_ray_head(settings)
            state.ray_started = True
            state.ray_port = settings.ray.head_port
            state.save(state_path(settings))
        # The process that starts Serve sees the node's ingress choice too.
        os.environ.update(ingress_env(settings))
        # "auto" (not the explicit address) also picks up the node's token authentication.
        ray.init(
            address="auto",
            namespace=settings.ray.namespace,
            logging_level=logging.WARNING,
            log_to_driver=False,
            **worker_logging("auto", settings.log_level),
        )
        console.print(f"[bold]ray[/]: local node with {ray.cluster_resources().get('CPU', 0):.0f} CPUs")  # type: ignore[no-untyped-call]
    # Later commands join this cluster (cluster.top.targets), with its authentication mode.
    state.ray_address = settings.ray.address or str(ray.get_runtime_context().gcs_address)
    state.ray_auth_mode = os.environ.get("RAY_AUTH_MODE")
    state.save(state_path(settings))

    embed_summary = run_embed(embed_config(settings, db.url, **embed_target(None, db.url, settings)))
    console.print(f"[bold]embedding[/]: {embed_summary.line()}")
    notify_index(embed_summary, settings.ray.namespace)

    deploy_search(settings, db.url)
    deploy_cms(settings, db.url)
    deploy_trends(settings, db.url)
    if settings.trends.enabled:
        trends = start_trends(settings, db.url)  # the supervisor starts any clusterer missing, now and later
        console.print(f"[bold]trends[/]: {len(trends)} clusterer(s) started, the supervisor starts new ones")
    start_cms_scheduler(cms_app_args(settings, db.url))  # get-or-create; replicas never start it
    console.print(f"[bold]schedules[/]: {start_job_scheduler(settings, db.url)}", markup=True)
    resumed = resume_activations(embed_config(settings, db.url), settings.ray.namespace)
    if resumed:
        console.print(
            f"[bold]models[/]: resuming the activation of entries {', '.join(map(str, resumed))} in the "
            "background (`pulse models list` shows the progress)"
        )
    state.api_url = api_url(settings)
    if settings.ray.include_dashboard and not settings.ray.address:
        state.dashboard_url = f"http://127.0.0.1:{settings.ray.dashboard_port}"
    state.save(state_path(settings))
    ready = wait_ready(state.api_url, settings.serve.ready_timeout_s)
    console.print(
        f"[bold green]Pulse is up[/] in {time.perf_counter() - started:.0f} s: "
        f"{ready.get('vectors')} vectors, model {ready.get('model')}"
    )
    if settings.console.enabled:
        console.print(f"  console:   {state.api_url}/console/  (trends, search and the editor, in a browser)")
    console.print(f"  search:    {state.api_url}/v1/search?q=students+march+against+gun+violence")
    console.print(f"  trends:    {state.api_url}/v1/trends?until=2018-03-31")
    console.print(f"  API docs:  {state.api_url}/docs")
    console.print(
        f"  CMS:       {state.api_url}/v1/cms/docs (admin {settings.cms.admin_email}; password in "
        "PULSE_CMS__ADMIN_PASSWORD or var/cms_admin_password)"
    )
    if state.dashboard_url:
        console.print(f"  dashboard: {state.dashboard_url}")
    console.print("  stop with `pulse down` (data is kept)")
    ray.shutdown()  # type: ignore[no-untyped-call]
    return state


def down(settings: Settings, console: Console) -> None:
    state = PlatformState.load(state_path(settings))
    address = settings.ray.address or ("auto" if local_ray_running() else None)
    connected = False
    if address:
        try:
            ray.init(address=address, namespace=settings.ray.namespace, logging_level=logging.WARNING)
            connected = True
        except (ConnectionError, RuntimeError, ValueError) as exc:
            console.print(f"[bold]ray[/]: cannot join {address}: {exc}")
    if connected:
        from ray import serve

        try:
            # Not one blocking delete after another (each waits for its replicas to stop): the shutdown
            # below waits for them all at once.
            for app in (SEARCH_APP_NAME, CMS_APP_NAME, TRENDS_APP_NAME, TOPICS_APP_NAME):
                serve.delete(app, _blocking=False)
            serve.shutdown()  # type: ignore[no-untyped-call]
        except Exception as exc:  # Serve not running is fine
            logger.debug("serve shutdown: %s", exc)
        snapshot_before_stop()  # clusterer ids and profiles must survive the stop: snapshots now
        for entry in ray.util.list_named_actors(all_namespaces=True):
            if entry["name"].startswith(
                (
                    INDEX_ACTOR_PREFIX,
                    KEYWORD_ACTOR_PREFIX,
                    CMS_SCHEDULER_NAME,
                    JOB_SCHEDULER_NAME,
                    TREND_ACTOR_PREFIX,
                    PROFILE_ACTOR_NAME,
                )
            ):
                ray.kill(ray.get_actor(entry["name"], namespace=entry["namespace"]), no_restart=True)
        ray.shutdown()  # type: ignore[no-untyped-call]
        console.print("[bold]serve[/]: search application and index actors stopped")
    if state.ray_started:
        port = state.ray_port or settings.ray.head_port
        stopped = stop_node(port, current_cluster_file=RAY_CURRENT_CLUSTER_FILE)
        console.print(
            f"[bold]ray[/]: local node on port {port} stopped ({stopped} processes; "
            "other Ray instances on this machine keep running)"
        )
        state.ray_started = False
        state.ray_port = None
    state.ray_address = state.ray_auth_mode = None
    if state.embedded_db_dir and stop_embedded(Path(state.embedded_db_dir)):
        console.print(
            f"[bold]database[/]: embedded PostgreSQL stopped (data kept in {state.embedded_db_dir})"
        )
    state.api_url = ""
    state.dashboard_url = None
    state.save(state_path(settings))
    console.print("Pulse is down; data is kept. `pulse up` starts it again.")


def status(settings: Settings, console: Console) -> int:
    db: DatabaseChoice = choose_database(settings)
    engine = make_engine(db.url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            documents = DocumentRepository(session).count()
            embeddings = EmbeddingRepository(session)
            registry = ModelRegistry(session)
            model = registry.active(settings.embed.index_name)
            building = [m for m in registry.all() if m.status == "building"]
            embedded = embeddings.count_embedded(model_id=model.id) if model else 0
            pending = embeddings.count_pending(model_id=model.id) if model else documents
    finally:
        engine.dispose()
    console.print(f"[bold]database[/]: {db.describe()}")
    console.print(f"  documents: {documents}, embedded: {embedded}, pending: {pending}")
    active = f"{model.name} ({model.revision}, dim {model.dimension}, entry {model.id})" if model else "none"
    console.print(f"  active model: {active}")
    if building:
        names = ", ".join(f"{m.id} ({m.name})" for m in building)
        console.print(f"  building: {names}; `pulse models list` shows their progress")
    target = choose_ray(settings)
    console.print(f"[bold]ray[/]: {target.describe() if target.address else 'not running'}")
    url = api_url(settings)
    try:
        resp = httpx.get(f"{url}/readyz", timeout=3)
        console.print(f"[bold]api[/]: {url} -> {resp.status_code} {resp.text}")
    except httpx.HTTPError:
        console.print(f"[bold]api[/]: {url} not answering")
    return 0
