"""The search application: ``GET /v1/search``, ``/healthz``, ``/readyz``, OpenAPI at ``/docs``.

Two deployments: ``QueryEmbedder`` (the embedding model, ``@serve.batch`` over concurrent queries) and
``SearchIngress`` (FastAPI). The ingress holds a handle to the model's named index actor, never a copy
of the index, and reads titles and URLs from PostgreSQL.

Run it with ``pulse up``, or ``serve run serve_apps.search_app:app_builder database_url=...``, or
``serve deploy`` with ``serve_apps/serve_config.yaml``.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import ray
from fastapi import FastAPI, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from ray import serve
from ray.serve.handle import DeploymentHandle
from ray.util import metrics
from sqlalchemy.ext.asyncio import async_sessionmaker

from actors.errors import IndexNotReady
from actors.index_actor import IndexActorConfig, get_or_create_index_actor
from jobs.embed.encode import describe_model, encode, load_model
from serve_apps.errors import InvalidRequest, NotReady, install_error_handlers
from serve_apps.schemas import ErrorResponse, Health, ModelRef, Readiness, SearchResponse, SearchResult
from storage.database import make_async_engine
from storage.documents import fetch_summaries
from storage.embeddings import fetch_latest_watermark
from storage.model_registry import ModelRow, fetch_active_model
from storage.vector_files import absolute_storage_uri

logger = logging.getLogger(__name__)

#: Largest ``k`` a search may ask for.
MAX_K = 100


class SearchArgs(BaseModel):
    """Builder arguments (``serve run ... key=value`` or the Serve config's ``args``)."""

    database_url: str = Field(description="SQLAlchemy URL of Pulse's PostgreSQL database")
    storage_uri: str = Field(default="var/storage", description="Storage URI of the vector files")
    model_name: str = Field(default="sentence-transformers/all-MiniLM-L6-v2")
    device: str = Field(default="auto")
    namespace: str = Field(default="pulse")
    max_ongoing_requests: int = Field(default=256, ge=1)
    ingress_replicas: int = Field(default=1, ge=1)
    embedder_replicas: int = Field(default=1, ge=1)
    embedder_num_cpus: float = Field(default=0.5, ge=0)
    max_batch_size: int = Field(default=32, ge=1)
    batch_wait_timeout_s: float = Field(default=0.005, ge=0)
    max_query_chars: int = Field(default=1000, ge=1)
    index_num_cpus: float = Field(default=0.25, ge=0)
    index_omp_threads: int = Field(default=1, ge=1)
    index_poll_interval_s: float = Field(default=10.0, gt=0)
    index_name: str = Field(default="default", description="The index whose active model is served")
    model_refresh_s: float = Field(default=5.0, gt=0, description="Seconds between active-model checks")


@dataclass(frozen=True)
class QueryModel:
    """Which model embeds a query, and how (its registry entry's recipe)."""

    entry_id: int
    ref: str
    normalize: bool
    query_prefix: str = ""


def query_model(entry: ModelRow) -> QueryModel:
    return QueryModel(
        entry_id=entry.id,
        ref=entry.path or entry.name,
        normalize=entry.normalize,
        query_prefix=str(entry.recipe.get("query_prefix") or ""),
    )


class QueryEmbedder:
    """Embeds queries with the model of the index being searched; concurrent queries share encode calls.

    Models are loaded on first use (``prepare`` loads one ahead of a switch) and kept by reference, so
    during a model switch queries for the old and the new index are both served.
    """

    def __init__(
        self, model_name: str, device: str, max_batch_size: int, batch_wait_timeout_s: float
    ) -> None:
        self._device = device
        self._models: dict[str, Any] = {}
        self._load(model_name)  # the configured model, ready before the first query
        self.embed.set_max_batch_size(max_batch_size)  # type: ignore[attr-defined]
        self.embed.set_batch_wait_timeout_s(batch_wait_timeout_s)  # type: ignore[attr-defined]

    def _load(self, ref: str) -> Any:
        if ref not in self._models:
            self._models[ref] = load_model(describe_model(ref), device=self._device, threads=1)
        return self._models[ref]

    async def prepare(self, model: QueryModel) -> bool:
        await asyncio.to_thread(self._load, model.ref)
        return True

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def embed(self, requests: list[tuple[str, QueryModel]]) -> list[np.ndarray]:
        """``(query, model)`` pairs -> vectors; one encode call per model in the batch."""
        texts = [text for text, _ in requests]
        out: list[np.ndarray | None] = [None] * len(texts)
        groups: dict[QueryModel, list[int]] = {}
        for i, (_, m) in enumerate(requests):
            groups.setdefault(m, []).append(i)
        for m, rows in groups.items():
            model = await asyncio.to_thread(self._load, m.ref)
            batch = [m.query_prefix + texts[i] for i in rows]
            vectors = await asyncio.to_thread(
                encode, model, batch, batch_size=len(batch), normalize=m.normalize
            )
            for i, v in zip(rows, vectors, strict=True):
                out[i] = v
        return [v for v in out if v is not None]


api = FastAPI(
    title="Pulse search API",
    version="0.1.0",
    description="Semantic search over Pulse's documents.",
    responses={422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)
install_error_handlers(api)


@serve.ingress(api)
class SearchIngress:
    """HTTP front: embeds the query, asks the active entry's index actor, reads titles from PostgreSQL.

    It re-reads the index's active entry every ``model_refresh_s`` seconds. When another entry became
    active it keeps answering from the current (complete) index while the new entry's index loads, and
    moves over only once that index holds every file committed at the switch: a model switch is
    atomic for clients, and never serves a half-built index.
    """

    def __init__(self, embedder: DeploymentHandle[Any], args: dict[str, Any]) -> None:
        self._args = SearchArgs.model_validate(args)
        self._embedder = embedder
        self._engine = make_async_engine(self._args.database_url, pool_size=4)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        self._active: ModelRow | None = None
        self._indexes: dict[tuple[int, str], Any] = {}
        self._checked_at = 0.0
        self._switching: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._stage_ms = metrics.Histogram(
            "pulse_search_stage_latency_ms",
            description="Latency of each stage of /v1/search (embed, index, db) in milliseconds.",
            boundaries=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
            tag_keys=("stage",),
        )

    def _index(self, entry: ModelRow, level: str) -> Any:
        key = (entry.id, level)
        if key not in self._indexes:
            config = IndexActorConfig(
                database_url=self._args.database_url,
                storage_uri=self._args.storage_uri,
                model_id=entry.id,
                dimension=entry.dimension,
                namespace=self._args.namespace,
                level=level,
                num_cpus=self._args.index_num_cpus,
                omp_threads=self._args.index_omp_threads,
                poll_interval_s=self._args.index_poll_interval_s,
            )
            self._indexes[key] = get_or_create_index_actor(config)
        return self._indexes[key]

    async def _entry(self) -> ModelRow:
        """The entry search serves now; notices a newly activated entry and prepares the switch."""
        now = time.monotonic()
        if self._active is not None and now - self._checked_at < self._args.model_refresh_s:
            return self._active
        async with self._lock:
            if self._active is None or now - self._checked_at >= self._args.model_refresh_s:
                self._checked_at = now
                async with self._sessions() as session:
                    latest = await fetch_active_model(session, self._args.index_name)
                if latest is not None and self._active is None:
                    self._active = latest
                elif (
                    latest is not None
                    and self._active is not None
                    and latest.id != self._active.id
                    and (self._switching is None or self._switching.done())
                ):
                    self._switching = asyncio.create_task(self._switch_to(latest))
        if self._active is None:
            raise NotReady("no embedding model is active yet; run `pulse embed`", retry_after_s=30)
        return self._active

    async def _switch_to(self, entry: ModelRow) -> None:
        """Serve ``entry`` once its document index holds every file committed when it became active."""
        try:
            async with self._sessions() as session:
                target = await fetch_latest_watermark(session, model_id=entry.id)
            index = self._index(entry, "document")
            await self._embedder.prepare.remote(query_model(entry))
            while True:
                stats = await index.stats.remote()
                if stats["ready"] and stats["watermark"] >= target:
                    break
                await asyncio.sleep(0.5)
            previous, self._active = self._active, entry
            logger.info(
                "search moved from entry %s to entry %d (%s, %d vectors)",
                previous.id if previous else None,
                entry.id,
                entry.name,
                stats["size"],
            )
        except Exception:  # the next refresh tries again; meanwhile the current index keeps serving
            logger.exception("switching search to entry %d failed", entry.id)

    @api.get("/healthz", response_model=Health, summary="Liveness: the HTTP server answers")
    async def healthz(self) -> Health:
        return Health(status="ok")

    @api.get(
        "/readyz",
        response_model=Readiness,
        summary="Readiness: 200 once the vector index is loaded, 503 before",
        responses={503: {"model": Readiness}},
    )
    async def readyz(self) -> Any:
        try:
            model = await self._entry()
            stats = await asyncio.wait_for(self._index(model, "document").stats.remote(), timeout=5)
        except NotReady as exc:
            return JSONResponse(
                status_code=503,
                content=Readiness(status="not_ready", reason=exc.message).model_dump(),
                headers=exc.headers,
            )
        except (TimeoutError, ray.exceptions.RayError) as exc:
            return JSONResponse(
                status_code=503,
                content=Readiness(
                    status="not_ready", reason=f"index actor unavailable: {type(exc).__name__}"
                ).model_dump(),
                headers={"Retry-After": "5"},
            )
        if not stats["ready"]:
            return JSONResponse(
                status_code=503,
                content=Readiness(
                    status="loading",
                    model=model.name,
                    model_id=model.id,
                    reason=stats["last_error"] or "the vector index is loading",
                ).model_dump(),
                headers={"Retry-After": "5"},
            )
        return Readiness(status="ready", model=model.name, model_id=model.id, vectors=stats["size"])

    @api.get(
        "/v1/search",
        response_model=SearchResponse,
        summary="Semantic search: the k documents closest in meaning to q, best first",
    )
    async def search(
        self,
        q: Annotated[str, Query(min_length=1, description="The query text")],
        response: Response,
        k: Annotated[int, Query(ge=1, le=MAX_K, description="How many results (1-100)")] = 10,
        level: Annotated[
            Literal["document", "chunk"],
            Query(
                description=(
                    "Match against document vectors (the mean of a document's chunks) or against each "
                    "chunk (a long document ranks by its best passage)"
                )
            ),
        ] = "document",
    ) -> SearchResponse:
        query = q.strip()
        if not query:
            raise InvalidRequest("q: the query is blank; send some words to search for")
        if len(query) > self._args.max_query_chars:
            raise InvalidRequest(
                f"q: the query is {len(query)} characters long; the limit is {self._args.max_query_chars}"
            )
        entry = await self._entry()
        index = self._index(entry, level)
        t0 = time.perf_counter()
        vector = await self._embedder.embed.remote((query, query_model(entry)))
        t1 = time.perf_counter()
        try:
            hits = await index.search.remote(np.asarray(vector, dtype=np.float32)[None, :], k)
        except IndexNotReady as exc:
            raise NotReady(
                f"the {level} index of model {entry.name} is loading; retry shortly", retry_after_s=5
            ) from exc
        ids, scores = hits.ids[0], hits.scores[0]
        t2 = time.perf_counter()
        async with self._sessions() as session:
            docs = await fetch_summaries(session, ids)
        t3 = time.perf_counter()
        stages = {"embed": t1 - t0, "index": t2 - t1, "db": t3 - t2}
        response.headers["Server-Timing"] = ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in stages.items())
        for stage, seconds in stages.items():
            self._stage_ms.observe(seconds * 1000, tags={"stage": stage})
        results = [
            SearchResult(
                id=i, title=docs[i].title, url=docs[i].url, published_at=docs[i].published_at, score=s
            )
            for i, s in zip(ids, scores, strict=True)
            if i in docs  # a document deleted since it was indexed is skipped
        ]
        return SearchResponse(
            query=query, model=ModelRef(id=entry.id, name=entry.name), level=level, results=results
        )


def app_builder(args: dict[str, Any]) -> serve.Application:
    """Build the application from plain arguments (the Serve config or `pulse up`)."""
    parsed = SearchArgs.model_validate(args)
    # A relative storage path means the caller's working directory, not each replica's.
    parsed.storage_uri = absolute_storage_uri(parsed.storage_uri)
    embedder = serve.deployment(
        name="QueryEmbedder",
        num_replicas=parsed.embedder_replicas,
        max_ongoing_requests=parsed.max_ongoing_requests,
        ray_actor_options={"num_cpus": parsed.embedder_num_cpus},
    )(QueryEmbedder)
    ingress = serve.deployment(
        name="SearchIngress",
        num_replicas=parsed.ingress_replicas,
        max_ongoing_requests=parsed.max_ongoing_requests,
        ray_actor_options={"num_cpus": 0},
    )(SearchIngress)
    app: serve.Application = ingress.bind(
        embedder.bind(parsed.model_name, parsed.device, parsed.max_batch_size, parsed.batch_wait_timeout_s),
        parsed.model_dump(),
    )
    return app
