"""The search application: ``/v1/search``, ``/v1/documents/{id}``, ``/v1/documents/{id}/similar``,
``/healthz``, ``/readyz``, OpenAPI at ``/docs``.

Two deployments: ``QueryEmbedder`` (the embedding model, ``@serve.batch`` over concurrent queries) and
``SearchIngress`` (FastAPI). The ingress holds handles to the active entry's index shard actors and its
keyword (BM25) actor, never copies of the indexes, and reads titles and URLs from PostgreSQL.
Concurrent requests are batched twice: queries share encode calls in the embedder, and the ingress
sends the vectors of concurrent searches to the shards as one matrix, and concurrent keyword queries as
one call (``MicroBatcher``s: its embedder calls too, one per batch of queries).

Run it with ``pulse up``, or ``serve run serve_apps.search.app:app_builder database_url=...``, or
``serve deploy`` with ``serve_apps/serve_config.yaml``.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import ray
from fastapi import Depends, FastAPI, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from ray import serve
from ray.serve.handle import DeploymentHandle
from ray.util import metrics
from sqlalchemy.ext.asyncio import async_sessionmaker

from actors.errors import IndexNotReady
from actors.filters import SearchFilter
from actors.index_actor import IndexActorConfig, ShardedHits, ShardedIndex
from actors.keyword_actor import KeywordActorConfig, get_or_create_keyword_actor
from actors.vector_index import IndexConfig, SearchHits
from cluster.ground.settings import IndexSettings, SearchSettings
from serve_apps.errors import InvalidRequest, NotFound, NotReady, error_responses, install_error_handlers
from serve_apps.inputs import Id, reject_unstorable_text
from serve_apps.search.fusion import DEFAULT_PARAMS, FusionParams, fuse
from serve_apps.search.micro_batch import MicroBatcher
from serve_apps.search.params import Cursor, decode_cursor, encode_cursor, fingerprint, search_filter
from serve_apps.search.query_embedder import QueryEmbedder, QueryModel, query_model
from serve_apps.search.schemas import (
    DocumentOut,
    Health,
    ModelRef,
    Readiness,
    SearchResponse,
    SearchResult,
    ShardReport,
    ShardStatus,
    SimilarResponse,
)
from storage.database import make_async_engine
from storage.documents import DocumentSummary, fetch_document, fetch_summaries
from storage.embeddings import fetch_latest_watermark
from storage.model_registry import ModelRow, fetch_active_model
from storage.vector_files import absolute_storage_uri

logger = logging.getLogger(__name__)

#: Largest ``k`` a search may ask for.
MAX_K = 100
Mode = Literal["vector", "keyword", "hybrid"]
Level = Literal["document", "chunk"]


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
    embedder_num_cpus: float = Field(default=0.1, ge=0)
    max_batch_size: int = Field(default=32, ge=1)
    batch_wait_timeout_s: float = Field(default=0.005, ge=0)
    max_query_chars: int = Field(default=1000, ge=1)
    index_name: str = Field(default="default", description="The index whose active model is served")
    model_refresh_s: float = Field(default=5.0, gt=0, description="Seconds between active-model checks")
    access_log: bool = Field(default=False, description="Serve's per-request access log")
    index: IndexSettings = Field(default_factory=IndexSettings, description="Index shards (PULSE_INDEX__*)")
    search: SearchSettings = Field(default_factory=SearchSettings, description="Ranking (PULSE_SEARCH__*)")


def index_config(s: IndexSettings) -> IndexConfig:
    return IndexConfig(
        kind=s.kind,
        exact_max=s.exact_max,
        hnsw_max=s.hnsw_max,
        hnsw_m=s.hnsw_m,
        ef_construction=s.ef_construction,
        ef_search=s.ef_search,
        nprobe=s.nprobe,
        exact_filter_max=s.exact_filter_max,
        rebuild_min_rows=s.rebuild_min_rows,
        rebuild_fraction=s.rebuild_fraction,
        huge_pages=s.huge_pages,
    )


def fusion_params(s: SearchSettings) -> FusionParams:
    """The hybrid fusion: the measured default, with the settings' overrides."""
    base = DEFAULT_PARAMS
    method = base.method if s.fusion == "default" else s.fusion
    weights = base.weights or (1.0, 1.0)
    weights = (
        s.keyword_weight if s.keyword_weight is not None else weights[0],
        s.vector_weight if s.vector_weight is not None else weights[1],
    )
    return FusionParams(
        method=method, weights=weights, rrf_k=base.rrf_k, missing=base.missing, depth=base.depth
    )


@dataclass(frozen=True)
class _VectorAsk:
    entry_id: int
    level: str
    vector: np.ndarray
    depth: int
    flt: SearchFilter


@dataclass(frozen=True)
class _KeywordAsk:
    entry_id: int
    query: str
    depth: int
    flt: SearchFilter
    languages: tuple[str, ...]  # the lang filter's: they choose how the query is analysed
    normalize: bool  # scores divided by the query's upper bound, as hybrid fusion expects


@dataclass(frozen=True)
class _Answer:
    ids: list[int]
    scores: list[float]
    answered: int = 1
    shards: int = 1


def _raise_or(answer: _Answer | BaseException) -> _Answer:
    if isinstance(answer, BaseException):
        raise answer
    return answer


async def _await(ref: Any) -> Any:
    return await ref


def _result(doc: DocumentSummary, score: float) -> SearchResult:
    return SearchResult(
        id=doc.id,
        title=doc.title,
        url=doc.url,
        published_at=doc.published_at,
        language=doc.language,
        source=doc.source,
        category=doc.category,
        score=score,
    )


def _not_ready(
    reason: str, *, status: str, model: ModelRow | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = Readiness(
        status=status,
        model=model.name if model else None,
        model_id=model.id if model else None,
        reason=reason,
    )
    return JSONResponse(status_code=503, content=body.model_dump(), headers=headers or {"Retry-After": "5"})


api = FastAPI(
    title="Pulse search API",
    version="0.2.0",
    description="Semantic, keyword and hybrid search over Pulse's documents.",
    responses=error_responses(422, 503),
    dependencies=[Depends(reject_unstorable_text)],
)
install_error_handlers(api)


@serve.ingress(api)
class SearchIngress:
    """HTTP front: embeds the query, asks the index shards and the keyword index, fuses, reads titles.

    It re-reads the index's active entry every ``model_refresh_s`` seconds. When another entry became
    active it keeps answering from the current (complete) index while the new entry's index loads, and
    moves over only once that index holds every file committed at the switch: a model switch is
    atomic for clients, and never serves a half-built index.
    """

    def __init__(self, embedder: DeploymentHandle[Any], args: dict[str, Any]) -> None:
        self._args = SearchArgs.model_validate(args)
        self._embedder = embedder
        # Concurrent requests share calls: queries to the embedder, vectors to the shards (one matrix),
        # keyword queries to the keyword actor.
        self._embed_batch: MicroBatcher[tuple[str, QueryModel], np.ndarray] = MicroBatcher(
            self._embed_many, max_size=self._args.max_batch_size, wait_s=self._args.batch_wait_timeout_s
        )
        self._vector_batch: MicroBatcher[_VectorAsk, _Answer | BaseException] = MicroBatcher(
            self._vector_many, max_size=32, wait_s=0.002
        )
        self._keyword_batch: MicroBatcher[_KeywordAsk, _Answer | BaseException] = MicroBatcher(
            self._keyword_many, max_size=32, wait_s=0.002
        )
        self._engine = make_async_engine(self._args.database_url, pool_size=8)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        self._fusion = fusion_params(self._args.search)
        self._deadline_s = self._args.search.deadline_ms / 1000
        self._active: ModelRow | None = None
        self._indexes: dict[tuple[int, str], ShardedIndex] = {}
        self._keywords: dict[int, Any] = {}
        self._checked_at = 0.0
        self._switching: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._stage_ms = metrics.Histogram(
            "pulse_search_stage_latency_ms",
            description="Latency of each stage of /v1/search (embed, vector, keyword, db) in milliseconds.",
            boundaries=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
            tag_keys=("stage",),
        )

    # ------------------------------------------------------------------------------- index handles
    def _index(self, entry: ModelRow, level: str) -> ShardedIndex:
        key = (entry.id, level)
        if key not in self._indexes:
            s = self._args.index
            self._indexes[key] = ShardedIndex(
                IndexActorConfig(
                    database_url=self._args.database_url,
                    storage_uri=self._args.storage_uri,
                    model_id=entry.id,
                    dimension=entry.dimension,
                    namespace=self._args.namespace,
                    level=level,
                    shards=s.shards,
                    num_cpus=s.num_cpus,
                    omp_threads=s.omp_threads,
                    poll_interval_s=s.poll_interval_s,
                    snapshot_interval_s=s.snapshot_interval_s,
                    index=index_config(s),
                )
            )
        return self._indexes[key]

    def _keyword(self, entry_id: int) -> Any:
        if entry_id not in self._keywords:
            self._keywords[entry_id] = get_or_create_keyword_actor(
                KeywordActorConfig(
                    database_url=self._args.database_url,
                    model_id=entry_id,
                    namespace=self._args.namespace,
                    num_cpus=self._args.index.keyword_num_cpus,
                    poll_interval_s=self._args.index.poll_interval_s,
                )
            )
        return self._keywords[entry_id]

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
            self._keyword(entry.id)  # starts loading the new entry's keyword index too
            await self._embedder.prepare.remote(query_model(entry))
            while True:
                stats = await index.stats()
                if all(s["ready"] and s["watermark"] >= target for s in stats):
                    break
                await asyncio.sleep(0.5)
            previous, self._active = self._active, entry
            logger.info(
                "search moved from entry %s to entry %d (%s, %d vectors)",
                previous.id if previous else None,
                entry.id,
                entry.name,
                sum(s["size"] for s in stats),
            )
        except Exception:  # the next refresh tries again; meanwhile the current index keeps serving
            logger.exception("switching search to entry %d failed", entry.id)

    # ------------------------------------------------------------------------------------ batching
    async def _embed_many(self, asks: list[tuple[str, QueryModel]]) -> list[np.ndarray]:
        """Concurrent queries go to the embedder as one call (one encode per model there)."""
        vectors: list[np.ndarray] = await self._embedder.embed_many.remote(asks)
        return vectors

    async def _vector_many(self, asks: list[_VectorAsk]) -> list[_Answer | BaseException]:
        """Concurrent searches of one index and filter go to the shards as one query matrix."""
        groups: dict[tuple[int, str, SearchFilter], list[int]] = {}
        for i, ask in enumerate(asks):
            groups.setdefault((ask.entry_id, ask.level, ask.flt), []).append(i)
        out: list[_Answer | BaseException] = [RuntimeError("not answered")] * len(asks)

        async def run(key: tuple[int, str, SearchFilter], rows: list[int]) -> None:
            entry_id, level, flt = key
            index = self._indexes[(entry_id, level)]
            queries = np.stack([asks[i].vector for i in rows]).astype(np.float32)
            depth = max(asks[i].depth for i in rows)
            try:
                result: ShardedHits = await index.search(
                    queries, depth, None if flt.is_empty else flt, deadline_s=self._deadline_s
                )
            except (IndexNotReady, TimeoutError, ray.exceptions.RayError) as exc:
                for i in rows:
                    out[i] = exc
                return
            for j, i in enumerate(rows):
                out[i] = _Answer(
                    result.hits.ids[j][: asks[i].depth],
                    result.hits.scores[j][: asks[i].depth],
                    result.answered,
                    result.shards,
                )

        await asyncio.gather(*(run(key, rows) for key, rows in groups.items()))
        return out

    async def _keyword_many(self, asks: list[_KeywordAsk]) -> list[_Answer | BaseException]:
        groups: dict[tuple[int, SearchFilter, tuple[str, ...], bool], list[int]] = {}
        for i, ask in enumerate(asks):
            groups.setdefault((ask.entry_id, ask.flt, ask.languages, ask.normalize), []).append(i)
        out: list[_Answer | BaseException] = [RuntimeError("not answered")] * len(asks)

        async def run(key: tuple[int, SearchFilter, tuple[str, ...], bool], rows: list[int]) -> None:
            entry_id, flt, languages, normalize = key
            depth = max(asks[i].depth for i in rows)
            ref = self._keyword(entry_id).search.remote(
                [asks[i].query for i in rows], depth, None if flt.is_empty else flt, languages, normalize
            )
            try:
                hits: SearchHits = await asyncio.wait_for(_await(ref), timeout=self._deadline_s)
            except (IndexNotReady, TimeoutError, ray.exceptions.RayError) as exc:
                for i in rows:
                    out[i] = exc
                return
            for j, i in enumerate(rows):
                out[i] = _Answer(hits.ids[j][: asks[i].depth], hits.scores[j][: asks[i].depth])

        await asyncio.gather(*(run(key, rows) for key, rows in groups.items()))
        return out

    # -------------------------------------------------------------------------------------- routes
    @api.get("/healthz", response_model=Health, summary="Liveness: the HTTP server answers")
    async def healthz(self) -> Health:
        return Health(status="ok")

    @api.get(
        "/readyz",
        response_model=Readiness,
        summary="Readiness: 200 once every index shard and the keyword index are loaded, 503 before",
        responses={503: {"model": Readiness}},
    )
    async def readyz(self) -> Any:
        try:
            model = await self._entry()
            shards = await asyncio.wait_for(self._index(model, "document").stats(), timeout=5)
            keyword = await asyncio.wait_for(_await(self._keyword(model.id).stats.remote()), timeout=5)
        except NotReady as exc:
            return _not_ready(exc.message, status="not_ready", headers=exc.headers)
        except (TimeoutError, ray.exceptions.RayError) as exc:
            return _not_ready(f"index actor unavailable: {type(exc).__name__}", status="not_ready")
        loading = [s for s in shards if not s["ready"]]
        if loading or not keyword["ready"]:
            errors = [s["last_error"] for s in loading if s["last_error"]] + [keyword["last_error"]]
            reason = next((e for e in errors if e), None) or (
                f"{len(loading)} of {len(shards)} index shards loading"
                if loading
                else "the keyword index is loading"
            )
            return _not_ready(reason, status="loading", model=model)
        return Readiness(
            status="ready",
            model=model.name,
            model_id=model.id,
            vectors=sum(s["size"] for s in shards),
            shards=[
                ShardStatus(
                    shard=s["shard"],
                    ready=s["ready"],
                    vectors=s["size"],
                    index=s["factory"],
                    delta=s["delta_rows"],
                    watermark=s["watermark"],
                    restored_from=s["restored_from"],
                )
                for s in shards
            ],
            keyword_documents=keyword["size"],
        )

    @api.get(
        "/v1/search",
        response_model=SearchResponse,
        summary="Search: the k best documents for q (hybrid keyword + vector by default), with filters",
    )
    async def search(
        self,
        q: Annotated[str, Query(min_length=1, description="The query text")],
        response: Response,
        flt: Annotated[SearchFilter, Depends(search_filter)],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="Results per page (1-100)")] = 10,
        mode: Annotated[
            Mode | None,
            Query(
                description="vector (meaning), keyword (BM25 terms) or hybrid (both, fused); default hybrid"
            ),
        ] = None,
        level: Annotated[
            Level,
            Query(
                description=(
                    "Match against document vectors (the mean of a document's chunks) or against each "
                    "chunk (a long document ranks by its best passage)"
                )
            ),
        ] = "document",
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ) -> SearchResponse:
        query = q.strip()
        if not query:
            raise InvalidRequest("q: the query is blank; send some words to search for")
        if len(query) > self._args.max_query_chars:
            raise InvalidRequest(
                f"q: the query is {len(query)} characters long; the limit is {self._args.max_query_chars}"
            )
        mode = mode or self._args.search.default_mode
        max_depth = self._args.search.max_depth
        digest = fingerprint(query, mode, level, k, flt)
        offset = 0
        if cursor is not None:
            offset = decode_cursor(cursor, expected=digest, max_depth=max_depth).offset
        depth = min(offset + k + 1, max_depth)  # one more than the page: is there a next page?
        entry = await self._entry()
        timings: dict[str, float] = {}
        runs, answered, total = await self._retrieve(entry, query, mode, level, flt, depth, timings)
        t0 = time.perf_counter()
        if mode == "hybrid":
            ids, scores = fuse(runs, k=depth, params=self._fusion)
        else:
            ids, scores = list(runs[0][0]), list(runs[0][1])
        timings["fuse"] = time.perf_counter() - t0
        page_ids, page_scores = ids[offset : offset + k], scores[offset : offset + k]
        results = await self._results(page_ids, page_scores, timings)
        more = len(ids) > offset + k and offset + k < max_depth
        next_cursor = encode_cursor(Cursor(offset + k, digest)) if more else None
        self._report(response, timings)
        return SearchResponse(
            query=query,
            mode=mode,
            model=ModelRef(id=entry.id, name=entry.name),
            level=level,
            results=results,
            next_cursor=next_cursor,
            partial=answered < total,
            shards=ShardReport(answered=answered, total=total),
            timings_ms={stage: round(s * 1000, 2) for stage, s in timings.items()},
        )

    async def _retrieve(
        self,
        entry: ModelRow,
        query: str,
        mode: str,
        level: str,
        flt: SearchFilter,
        depth: int,
        timings: dict[str, float],
    ) -> tuple[list[tuple[list[int], list[float]]], int, int]:
        """The ranked runs the mode needs (keyword first, then vector) and how many parts answered."""
        fetch = max(depth, self._fusion.depth) if mode == "hybrid" else depth
        self._index(entry, level)  # the batch looks the index up by key

        async def vector_run() -> _Answer:
            t0 = time.perf_counter()
            vector = await self._embed_batch.submit((query, query_model(entry)))
            t1 = time.perf_counter()
            timings["embed"] = t1 - t0
            answer = await self._vector_batch.submit(
                _VectorAsk(entry.id, level, np.asarray(vector, dtype=np.float32), fetch, flt)
            )
            timings["vector"] = time.perf_counter() - t1
            return _raise_or(answer)

        async def keyword_run() -> _Answer:
            t0 = time.perf_counter()
            answer = await self._keyword_batch.submit(
                _KeywordAsk(entry.id, query, fetch, flt, tuple(flt.languages), normalize=mode == "hybrid")
            )
            timings["keyword"] = time.perf_counter() - t0
            return _raise_or(answer)

        wanted = {"vector": [vector_run], "keyword": [keyword_run], "hybrid": [keyword_run, vector_run]}[mode]
        outcomes = await asyncio.gather(*(run() for run in wanted), return_exceptions=True)
        runs: list[tuple[list[int], list[float]]] = []
        answered = total = 0
        failures: list[BaseException] = []
        for outcome in outcomes:
            if isinstance(outcome, _Answer):
                runs.append((outcome.ids, outcome.scores))
                answered += outcome.answered
                total += outcome.shards
            else:
                failures.append(outcome)
                runs.append(([], []))
                total += 1
        if len(failures) == len(outcomes):  # nothing answered: say why
            failure = failures[0]
            if isinstance(failure, IndexNotReady):
                raise NotReady(f"the index of model {entry.name} is loading; retry shortly", retry_after_s=5)
            if isinstance(failure, TimeoutError | ray.exceptions.RayError):
                raise NotReady("the search index did not answer in time; retry shortly", retry_after_s=2)
            raise failure
        for failure in failures:
            if not isinstance(failure, IndexNotReady | TimeoutError | ray.exceptions.RayError):
                raise failure
            logger.warning("search part failed, answering partially: %s", failure)
        return runs, answered, total

    async def _results(
        self, ids: list[int], scores: list[float], timings: dict[str, float]
    ) -> list[SearchResult]:
        t0 = time.perf_counter()
        async with self._sessions() as session:
            docs = await fetch_summaries(session, ids)
        timings["db"] = time.perf_counter() - t0
        return [_result(docs[i], s) for i, s in zip(ids, scores, strict=True) if i in docs]

    def _report(self, response: Response, timings: dict[str, float]) -> None:
        response.headers["Server-Timing"] = ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in timings.items())
        for stage, seconds in timings.items():
            self._stage_ms.observe(seconds * 1000, tags={"stage": stage})

    @api.get(
        "/v1/documents/{document_id}",
        response_model=DocumentOut,
        summary="One document, whole",
        responses=error_responses(404),
    )
    async def document(self, document_id: Id) -> DocumentOut:
        async with self._sessions() as session:
            doc = await fetch_document(session, document_id)
        if doc is None:
            raise NotFound(f"no document with id {document_id}", code="document_not_found")
        return DocumentOut(
            id=doc.id,
            title=doc.title,
            url=doc.url,
            text=doc.text,
            language=doc.language,
            source=doc.source,
            category=doc.category,
            published_at=doc.published_at,
            fetched_at=doc.fetched_at,
            metadata=doc.metadata,
        )

    @api.get(
        "/v1/documents/{document_id}/similar",
        response_model=SimilarResponse,
        summary="More like this: the k documents closest in meaning to a stored document",
        responses=error_responses(404),
    )
    async def similar(
        self,
        document_id: Id,
        response: Response,
        flt: Annotated[SearchFilter, Depends(search_filter)],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="How many (1-100)")] = 10,
    ) -> SimilarResponse:
        entry = await self._entry()
        index = self._index(entry, "document")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        try:
            vector = await index.vector_of(document_id)
        except IndexNotReady as exc:
            raise NotReady("the index is loading; retry shortly", retry_after_s=5) from exc
        if vector is None:
            async with self._sessions() as session:
                exists = await fetch_summaries(session, [document_id])
            if not exists:
                raise NotFound(f"no document with id {document_id}", code="document_not_found")
            raise NotFound(
                f"document {document_id} is not in the index of model {entry.name} yet; run `pulse embed`",
                code="document_not_indexed",
            )
        answer = _raise_or(
            await self._vector_batch.submit(_VectorAsk(entry.id, "document", vector, k + 1, flt))
        )
        timings["vector"] = time.perf_counter() - t0
        pairs = [(i, s) for i, s in zip(answer.ids, answer.scores, strict=True) if i != document_id][:k]
        results = await self._results([i for i, _ in pairs], [s for _, s in pairs], timings)
        self._report(response, timings)
        return SimilarResponse(
            document_id=document_id,
            model=ModelRef(id=entry.id, name=entry.name),
            results=results,
            partial=answer.answered < answer.shards,
            shards=ShardReport(answered=answer.answered, total=answer.shards),
            timings_ms={stage: round(s * 1000, 2) for stage, s in timings.items()},
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
        logging_config={"enable_access_log": parsed.access_log},
    )(QueryEmbedder)
    ingress = serve.deployment(
        name="SearchIngress",
        num_replicas=parsed.ingress_replicas,
        max_ongoing_requests=parsed.max_ongoing_requests,
        ray_actor_options={"num_cpus": 0},
        logging_config={"enable_access_log": parsed.access_log},
    )(SearchIngress)
    app: serve.Application = ingress.bind(
        embedder.bind(parsed.model_name, parsed.device, parsed.max_batch_size, parsed.batch_wait_timeout_s),
        parsed.model_dump(),
    )
    return app
