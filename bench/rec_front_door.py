"""Pulse's recommender through its front door, as a ``rec_eval.Method``: a private platform
(``front_door.Platform``: fresh database, `pulse up --no-sample`), the HuffPost headlines put in with
`pulse ingest` + `pulse embed`, an API key made over the CMS API by the admin, then the simulated log
replayed over HTTP in time order: before each request at ``now``, every training event before ``now`` is
POSTed to ``/v1/events`` (batches of up to 1,000, as a client would), and the list is
``GET /v1/recommend?user_id=...&k=...&as_of=<now>`` (``as_of``: rank as of that time, for replays; documents
published later are left out), read back to rows by URL.

The platform keeps events for ``PULSE_RECOMMEND__RETENTION_DAYS`` (the log is from 2018: the bench sets 10,000
days, else the profile actor's retention would drop its months at once). Documents that ingest merges as
duplicates have no id of their own: events on them are not sent, and a held-out one cannot be hit (counted as
a miss).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
from rec_eval import LoggedEvent

ADMIN_EMAIL = "admin@pulse.bench"
ADMIN_PASSWORD = "bench-admin-password-" + "x" * 16
SOURCE = "huffpost_rec"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


class FrontDoorMethod:
    """``pulse_front_door``: the running platform's ``/v1/recommend`` with default settings."""

    def __init__(
        self, name: str = "pulse_front_door", *, corpus: Any, diversity: float | None = None
    ) -> None:
        self.name = name
        self._corpus = corpus
        self._diversity = diversity
        self.platform: Any = None
        self.info: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------- setup
    def _start(self) -> None:
        from front_door import Platform
        from trend_quality import ingest_rows, summary_line, url_keys

        self.platform = Platform(
            env={
                "PULSE_CMS__ADMIN_EMAIL": ADMIN_EMAIL,
                "PULSE_CMS__ADMIN_PASSWORD": ADMIN_PASSWORD,
                "PULSE_RECOMMEND__RETENTION_DAYS": "10000",
            }
        )
        p = self.platform
        path = p.folder / f"{SOURCE}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in ingest_rows(self._corpus)), encoding="utf-8")
        p.up("--no-sample")
        self.info["ingest"] = summary_line(p.pulse("ingest", str(path), "--source", SOURCE), "ingest")
        self.info["embed"] = summary_line(p.pulse("embed"), "embed")
        rows = url_keys(self._corpus, SOURCE)
        from sqlalchemy import create_engine, text

        engine = create_engine(p.database_url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT id, canonical_url FROM documents")).all()
        engine.dispose()
        self._row_to_id = {rows[url]: int(i) for i, url in stored if url in rows}
        self._id_to_row = {v: k for k, v in self._row_to_id.items()}
        self.info["documents"] = len(stored)
        self.info["rows_with_an_id"] = len(self._row_to_id)
        p.wait_ready(documents=len(stored))
        self._http = httpx.Client(base_url=p.api_url, timeout=60)
        token = self._login()
        resp = self._http.post(
            "/v1/cms/keys",
            json={"name": "recommend bench", "role": "editor"},
            headers={"Authorization": f"Bearer {token}"},
        )
        resp.raise_for_status()
        self._http.headers["X-API-Key"] = resp.json()["key"]
        self.info["commands_s"] = dict(p.timings)

    def _login(self) -> str:
        for _ in range(30):
            resp = self._http.post(
                "/v1/cms/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            if resp.status_code == 200:
                return str(resp.json()["access_token"])
            time.sleep(1)
        raise RuntimeError(f"admin login failed: {resp.status_code} {resp.text[:300]}")

    def close(self) -> None:
        if self.platform is not None:
            self.platform.close()
            self.platform = None

    # ------------------------------------------------------------------------------------------ Method
    def fit(self, train_events: Sequence[LoggedEvent], *, vectors: np.ndarray, doc_times: np.ndarray) -> None:
        if self.platform is None:
            self._start()
        self._events = sorted(train_events, key=lambda e: e.ts)
        self._next = 0
        self.posted = 0
        self.skipped = 0
        self.post_s = 0.0
        self.get_ms: list[float] = []

    def _post_until(self, now: float) -> None:
        start = self._next
        while self._next < len(self._events) and self._events[self._next].ts < now:
            self._next += 1
        batch: list[dict[str, Any]] = []
        for e in self._events[start : self._next]:
            doc = self._row_to_id.get(int(e.doc))
            if doc is None:
                self.skipped += 1
                continue
            item: dict[str, Any] = {
                "event_id": e.event_id,
                "user_id": e.user,
                "document_id": doc,
                "type": e.type,
                "timestamp": _iso(e.ts),
            }
            if e.type == "dwell":
                item["value"] = float(e.value or 0.0)
            batch.append(item)
        t0 = time.perf_counter()
        for i in range(0, len(batch), 1000):
            resp = self._http.post("/v1/events", json={"events": batch[i : i + 1000]})
            if resp.status_code != 200:
                raise RuntimeError(f"POST /v1/events: {resp.status_code} {resp.text[:500]}")
            self.posted += resp.json()["stored"]
        self.post_s += time.perf_counter() - t0

    def recommend(self, user: str, *, now: float, k: int, exclude: set[int]) -> list[int]:
        self._post_until(now)
        params: dict[str, Any] = {"user_id": user, "k": min(k * 2, 100), "as_of": _iso(now)}
        if self._diversity is not None:
            params["diversity"] = self._diversity
        t0 = time.perf_counter()
        resp = self._http.get("/v1/recommend", params=params)
        self.get_ms.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 200:
            raise RuntimeError(f"GET /v1/recommend: {resp.status_code} {resp.text[:500]}")
        rows = [self._id_to_row.get(int(r["id"])) for r in resp.json()["results"]]
        return [r for r in rows if r is not None and r not in exclude][:k]

    def report(self) -> dict[str, Any]:
        return {
            **self.info,
            "events_posted": self.posted,
            "events_skipped_no_document": self.skipped,
            "post_events_s": round(self.post_s, 1),
            "get_recommend_ms_p50": round(float(np.median(self.get_ms)), 1) if self.get_ms else None,
            "get_recommend_ms_p99": round(float(np.percentile(self.get_ms, 99)), 1) if self.get_ms else None,
        }
