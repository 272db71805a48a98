"""The search application: ``/v1/search``, ``/v1/documents/{id}``, ``/v1/documents/{id}/similar``,
``/healthz``, ``/readyz``, OpenAPI at ``/docs``.

Two deployments: ``QueryEmbedder`` (the embedding model, ``@serve.batch`` over concurrent queries) and
``SearchIngress`` (FastAPI), whose routes are thin: retrieval and fusion over the index actors are
``serve_apps.search.retriever``'s (handles to the actors, never copies of the indexes; concurrent
requests batched), which registry entry is served is ``serve_apps.search.model_switch``'s, and titles
and URLs are read from PostgreSQL here. The arguments are ``serve_apps.search.args.SearchArgs``.

Run it with ``pulse up``, or ``serve run serve_apps.search.app:app_builder database_url=...``, or
``serve deploy`` with ``serve_apps/serve_config.yaml``.
"""

import asyncio
import logging
import time
from typing import Annotated, Any, Literal

import ray
from fastapi import Depends, FastAPI, Query, Response
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from sqlalchemy.ext.asyncio import async_sessionmaker

from actors.filters import SearchFilter
from actors.rec_actor import ProfileActorConfig, get_or_create_profile_actor
from actors.rec_profiles import ProfileParams
from actors.rec_ranking import Pick, Reason
from cluster.ground import ray_metrics
from cluster.ground.metrics import SEARCH_LATENCY, SEARCH_STAGE_LATENCY
from serve_apps.cms.security import TokenIssuer
from serve_apps.console import router as console_router
from serve_apps.deployment_options import deployment_options
from serve_apps.errors import InvalidRequest, NotFound, NotReady, error_responses, install_error_handlers
from serve_apps.http_metrics import install_http_metrics
from serve_apps.inputs import Id, reject_unstorable_text
from serve_apps.recommend.context import RecommendContext, ServedRecorder, install
from serve_apps.recommend.engine import Recommender, blend_params
from serve_apps.recommend.routes import results_with_reasons
from serve_apps.recommend.routes import router as recommend_router
from serve_apps.search.args import SearchArgs
from serve_apps.search.model_switch import ModelSwitch, RegistryReader
from serve_apps.search.params import Cursor, decode_cursor, encode_cursor, fingerprint, search_filter
from serve_apps.search.query_embedder import QueryEmbedder
from serve_apps.search.results import search_results
from serve_apps.search.retriever import Retriever
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
from storage.documents import fetch_document, fetch_summaries
from storage.model_registry import ModelRow
from storage.vector_files import absolute_storage_uri

logger = logging.getLogger(__name__)

#: Largest ``k`` a search may ask for.
MAX_K = 100
#: The search routes whose latency ``pulse_search_latency_ms`` records (its ``route`` tag).
SEARCH_ROUTE = "/v1/search"
SIMILAR_ROUTE = "/v1/documents/{document_id}/similar"
Mode = Literal["vector", "keyword", "hybrid"]
Level = Literal["document", "chunk"]


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
install_http_metrics(api, app="search")
# Recommendations share this application's prefix, embedder and index handles (serve_apps.recommend).
api.include_router(recommend_router, tags=["recommendations"])
# The web console's static pages (serve_apps.console): no replica of its own.
api.include_router(console_router)


@serve.ingress(api)
class SearchIngress:
    """HTTP front: the routes, over a ``Retriever`` (embeds the query, asks the index shards and the
    keyword index, fuses) and a ``ModelSwitch`` (which entry is served; a model switch is atomic for
    clients and never serves a half-built index); titles and URLs come from PostgreSQL.
    """

    def __init__(self, embedder: DeploymentHandle[Any], args: dict[str, Any]) -> None:
        self._args = SearchArgs.model_validate(args)
        self._engine = make_async_engine(self._args.database_url, pool_size=8)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        self._retriever = Retriever(embedder, self._args)
        self._switch = ModelSwitch(
            RegistryReader(self._sessions, self._args.index_name),
            self._retriever,
            refresh_s=self._args.model_refresh_s,
        )
        self._recommender: Recommender | None = None
        if self._args.recommend.enabled:
            self._recommender = self._recommendations()
        api.state.console = self._args.console.model_dump()

    def _recommendations(self) -> Recommender:
        """The profile actor (created if missing), the recommender over it, and the routes' context."""
        s = self._args.recommend
        config = ProfileActorConfig(
            database_url=self._args.database_url,
            storage_uri=self._args.storage_uri,
            namespace=self._args.namespace,
            params=ProfileParams.from_settings(s),
            num_cpus=s.num_cpus,
            poll_interval_s=s.poll_interval_s,
            snapshot_interval_s=s.snapshot_interval_s,
            retention_days=s.retention_days,
        )
        # Created now, not on the first request: it follows the events table from the start, and the first
        # POST /v1/events after a deploy finds it ready to apply what it stored.
        profiles = get_or_create_profile_actor(config)

        recommender = Recommender(self._retriever, self._sessions, profiles, s)
        install(
            RecommendContext(
                retriever=self._retriever,
                switch=self._switch,
                sessions=self._sessions,
                recommender=recommender,
                profiles=profiles,
                settings=s,
                tokens=TokenIssuer(self._args.jwt_secret) if self._args.jwt_secret else None,
                served=ServedRecorder(self._sessions),
            )
        )
        return recommender

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
            model = await self._switch.entry()
            shards = await asyncio.wait_for(self._retriever.document_shards(model), timeout=5)
            keyword = await asyncio.wait_for(self._retriever.keyword_stats(model), timeout=5)
        except NotReady as exc:
            return _not_ready(exc.message, status="not_ready", headers=exc.headers)
        except (TimeoutError, ray.exceptions.RayError) as exc:
            return _not_ready(f"index actor unavailable: {type(exc).__name__}", status="not_ready")
        loading = [s for s in shards if not s.ready]
        if loading or not keyword.ready:
            errors = [s.last_error for s in loading if s.last_error] + [keyword.last_error]
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
            vectors=sum(s.index.size for s in shards),
            shards=[
                ShardStatus(
                    shard=s.shard,
                    ready=s.ready,
                    vectors=s.index.size,
                    index=s.index.factory,
                    delta=s.index.delta_rows,
                    watermark=s.index.watermark,
                    restored_from=s.restored_from,
                )
                for s in shards
            ],
            keyword_documents=keyword.size,
        )

    @api.get(
        SEARCH_ROUTE,
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
        started = time.perf_counter()
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
        entry = await self._switch.entry()
        timings: dict[str, float] = {}
        ranked = await self._retriever.rank(entry, query, mode, level, flt, depth, timings)
        page_ids, page_scores = ranked.ids[offset : offset + k], ranked.scores[offset : offset + k]
        results = await self._results(page_ids, page_scores, timings, query=query)
        more = len(ranked.ids) > offset + k and offset + k < max_depth
        next_cursor = encode_cursor(Cursor(offset + k, digest)) if more else None
        self._report(response, timings, route=SEARCH_ROUTE, mode=mode, started=started)
        return SearchResponse(
            query=query,
            mode=mode,
            model=ModelRef(id=entry.id, name=entry.name),
            level=level,
            results=results,
            next_cursor=next_cursor,
            partial=ranked.answered < ranked.total,
            shards=ShardReport(answered=ranked.answered, total=ranked.total),
            timings_ms={stage: round(s * 1000, 2) for stage, s in timings.items()},
        )

    async def _results(
        self, ids: list[int], scores: list[float], timings: dict[str, float], *, query: str | None = None
    ) -> list[SearchResult]:
        t0 = time.perf_counter()
        async with self._sessions() as session:
            results = await search_results(session, ids, scores, query)
        timings["db"] = time.perf_counter() - t0
        return results

    def _report(
        self, response: Response, timings: dict[str, float], *, route: str, mode: str, started: float
    ) -> None:
        response.headers["Server-Timing"] = ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in timings.items())
        for stage, seconds in timings.items():
            ray_metrics.observe(SEARCH_STAGE_LATENCY, seconds * 1000, stage=stage)
        ray_metrics.observe(SEARCH_LATENCY, (time.perf_counter() - started) * 1000, route=route, mode=mode)

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
        return DocumentOut.model_validate(doc)

    @api.get(
        SIMILAR_ROUTE,
        response_model=SimilarResponse,
        summary=(
            "More like this: the documents closest in meaning to a stored document, blended with what its "
            "readers also read, each with its reason"
        ),
        responses=error_responses(404),
    )
    async def similar(
        self,
        document_id: Id,
        response: Response,
        flt: Annotated[SearchFilter, Depends(search_filter)],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="How many (1-100)")] = 10,
        diversity: Annotated[
            float | None, Query(ge=0, le=1, description="MMR diversity: 0 by similarity alone, 1 most varied")
        ] = None,
    ) -> SimilarResponse:
        entry = await self._switch.entry()
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        vector = await self._retriever.vector_of(entry, document_id)
        if vector is None:
            async with self._sessions() as session:
                exists = await fetch_summaries(session, [document_id])
            if not exists:
                raise NotFound(f"no document with id {document_id}", code="document_not_found")
            raise NotFound(
                f"document {document_id} is not in the index of model {entry.name} yet; run `pulse embed`",
                code="document_not_indexed",
            )
        if self._recommender is None:
            answer = await self._retriever.nearest(entry, vector, k + 1, flt)
            timings["vector"] = time.perf_counter() - t0
            pairs = [(i, s) for i, s in zip(answer.ids, answer.scores, strict=True) if i != document_id][:k]
            picks = [Pick(i, s, Reason("similar", document_id=document_id)) for i, s in pairs]
            answered, total = answer.answered, answer.shards
        else:
            params = blend_params(self._args.recommend, {"diversity": diversity})
            outcome = await self._recommender.similar(entry, document_id, vector, k, flt, params, time.time())
            timings.update(outcome.timings)
            picks, answered, total = outcome.ranking.picks, 1, 1
        t1 = time.perf_counter()
        async with self._sessions() as session:
            results = await results_with_reasons(session, picks)
        timings["db"] = time.perf_counter() - t1
        self._report(response, timings, route=SIMILAR_ROUTE, mode="similar", started=t0)
        return SimilarResponse(
            document_id=document_id,
            model=ModelRef(id=entry.id, name=entry.name),
            results=results,
            partial=answered < total,
            shards=ShardReport(answered=answered, total=total),
            timings_ms={stage: round(s * 1000, 2) for stage, s in timings.items()},
        )


def app_builder(args: dict[str, Any]) -> serve.Application:
    """Build the application from plain arguments (the Serve config or `pulse up`)."""
    parsed = SearchArgs.model_validate(args)
    # A relative storage path means the caller's working directory, not each replica's.
    parsed.storage_uri = absolute_storage_uri(parsed.storage_uri)
    embedder = serve.deployment(
        **deployment_options(
            parsed,
            name="QueryEmbedder",
            replicas=parsed.embedder_replicas,
            max_replicas=parsed.embedder_max_replicas,
            num_cpus=parsed.embedder_num_cpus,
        )
    )(QueryEmbedder)
    ingress = serve.deployment(
        **deployment_options(
            parsed,
            name="SearchIngress",
            replicas=parsed.ingress_replicas,
            max_replicas=parsed.ingress_max_replicas,
            num_cpus=parsed.ingress_num_cpus,
        )
    )(SearchIngress)
    app: serve.Application = ingress.bind(
        embedder.bind(parsed.model_name, parsed.device, parsed.max_batch_size, parsed.batch_wait_timeout_s),
        parsed.model_dump(),
    )
    return app
