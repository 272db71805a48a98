"""HTTP caching of the CMS's reads: ETags and 304s on every read, and an in-replica cache of anonymous
answers (published content) invalidated from the outbox.

``HttpCache`` is an ASGI middleware in front of the CMS's FastAPI app:

- Every ``GET`` answered 200 carries an ``ETag`` (an item's version, ``"3"``, as before; else a hash of
  the body, ``W/"…"``), ``Vary: Authorization, X-API-Key`` and a ``Cache-Control``. Anonymous answers
  (published content, the same for every anonymous caller) say ``public, no-cache`` (or ``public,
  max-age=N`` with ``PULSE_CMS__CACHE_MAX_AGE_S``), and an anonymous request whose ``If-None-Match`` names
  the answer's ETag gets 304 with no body. Answers to a caller with credentials say ``private, no-store``
  and are always whole: an item's version ETag does not tell one caller's view (the moves it may make)
  from another's, and a browser revalidating one user's stored answer with another user's token would
  otherwise be told to show the first user's view.
- Anonymous reads of items (``/items/{id}``), listings (``/items``) and taxonomy (``/categories``,
  ``/tags``) are answered from ``PublicCache`` (per replica, LRU, ``PULSE_CMS__CACHE_ENTRIES``) when
  there; a miss goes to the app and its 200 answer is kept. Anonymous callers see published content only,
  and a request with any credential header never reads or fills the cache, so no cached answer crosses
  users or roles. Hits still count against the caller's per-IP rate limit. Such answers say
  ``X-Cache: hit`` or ``X-Cache: miss``.

Invalidation (``OutboxWatcher``): every write that changes content adds an outbox event in its own
transaction (``storage.cms_events``), naming the items it changed. Each replica reads the events after the
last one it saw every ``PULSE_CMS__CACHE_POLL_S`` (and at once after its own writes), on a database
connection of its own (never queued behind the requests' pool), and drops the named items' answers and
every listing and taxonomy answer (every content change names its items). A replica's own successful
content writes also drop what they changed (``ITEM_WRITE``) before their answer goes out, so its callers
read their writes at once however busy it is. Event ids are
drawn before commit, so an id may commit after a higher one: ids skipped in the sequence are asked again
at each poll until they appear or are older than the entries' lifetime. A filled answer is kept only if
what it shows (its item; any item, for a listing) was not invalidated while it was computed. A replica
that cannot read the outbox (the database is down) empties its cache and serves from the app until it can.
The bound on serving an answer after its content changed is therefore one poll interval plus one query
(0.2 s by default); every entry also expires after ``PULSE_CMS__CACHE_TTL_S``. A replica that served
no GET for ``IDLE_STOP_S`` stops reading the outbox and empties its cache until its next GET.
``pulse_cms_cache_requests_total{result}`` counts hits and misses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cluster.ground import ray_metrics
from cluster.ground.metrics import CMS_CACHE_REQUESTS
from serve_apps.errors import error_body

logger = logging.getLogger(__name__)

#: Anonymous reads kept: ``(pattern of the path below the app's root, kind, route template)``.
CACHEABLE: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"/items/(?P<id>[1-9][0-9]{0,17})"), "item", "/items/{item_id}"),
    (re.compile(r"/items"), "listing", "/items"),
    (re.compile(r"/categories"), "taxonomy", "/categories"),
    (re.compile(r"/tags"), "taxonomy", "/tags"),
)
#: Writes that change what the cache holds (paths below the app's root), and the item each names: a
#: successful one invalidates this replica's cache before its answer goes out (other replicas read it in
#: the outbox). ``/items/{id}...`` names its item (a create, ``/items``, only changes listings); any other
#: content write (bulk, categories, tags) drops everything.
ITEM_WRITE = re.compile(r"/items/(?P<id>[1-9][0-9]{0,17})(/.*)?")
CONTENT_WRITES = ("/items", "/bulk", "/categories", "/tags")
#: Request headers that carry a credential: with one, a request is never served from or kept in cache.
CREDENTIAL_HEADERS = (b"authorization", b"x-api-key")
VARY = "Authorization, X-API-Key"
#: A replica that served no GET for this long stops reading the outbox (its cache emptied) until the next.
IDLE_STOP_S = 60.0
#: Shortest time between two outbox reads of a replica woken by its own writes.
MIN_REFRESH_GAP_S = 0.02
#: The largest answer kept.
MAX_ENTRY_BYTES = 256 * 1024


@dataclass(frozen=True)
class Entry:
    """One kept answer."""

    body: bytes
    etag: str
    content_type: str
    kind: str
    item_id: int | None
    stored_at: float


#: Items whose invalidations a cache counts one by one; past that, it starts over (drops everything).
MAX_TRACKED_ITEMS = 100_000


@dataclass
class PublicCache:
    """The replica's anonymous answers by path and query, least recently used dropped first.

    An answer is computed from the database while invalidations may arrive: ``mark`` is read before, and
    ``put`` keeps the answer only if nothing it depends on was invalidated since (the item, for an item's
    answer; any change, for listings and taxonomy)."""

    max_entries: int = 4096
    ttl_s: float = 300.0
    entries: OrderedDict[str, Entry] = field(default_factory=OrderedDict)
    #: Bumped when everything is dropped; ``listings`` at every invalidation; ``items`` per item.
    full: int = 0
    listings: int = 0
    items: dict[int, int] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def get(self, key: str, now: float) -> Entry | None:
        entry = self.entries.get(key)
        if entry is not None and now - entry.stored_at >= self.ttl_s:
            del self.entries[key]
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return entry

    def mark(self, item_id: int | None) -> tuple[int, int]:
        """What an answer about ``item_id`` (None: a listing or taxonomy) depends on, now."""
        return (self.full, self.listings if item_id is None else self.items.get(item_id, 0))

    def put(self, key: str, entry: Entry, *, mark: tuple[int, int]) -> bool:
        """Keep ``entry`` unless what it depends on was invalidated since ``mark`` was read."""
        depends = entry.item_id if entry.kind == "item" else None
        if mark != self.mark(depends) or self.max_entries <= 0 or len(entry.body) > MAX_ENTRY_BYTES:
            return False
        self.entries[key] = entry
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return True

    def invalidate(self, item_ids: Iterable[int] | None) -> int:
        """Drop the answers about ``item_ids`` and every listing (``None``: everything); how many."""
        self.listings += 1
        ids = None if item_ids is None else set(item_ids)
        if ids is not None:
            for i in ids:
                self.items[i] = self.items.get(i, 0) + 1
            if len(self.items) > MAX_TRACKED_ITEMS:
                ids = None
        if ids is None:
            self.full += 1
            self.items.clear()
            dropped = len(self.entries)
            self.entries.clear()
            return dropped
        doomed = [key for key, entry in self.entries.items() if entry.kind != "item" or entry.item_id in ids]
        for key in doomed:
            del self.entries[key]
        return len(doomed)

    @property
    def hit_rate(self) -> float:
        asked = self.hits + self.misses
        return self.hits / asked if asked else 0.0


@dataclass
class OutboxWatcher:
    """Which outbox events a replica has seen: the highest id, and the ids below it not seen yet (drawn
    by a transaction that had not committed, or rolled back), each with when it was first missed."""

    seen: int
    gaps: dict[int, float] = field(default_factory=dict)
    gap_ttl_s: float = 300.0

    @classmethod
    def starting_at(
        cls, present: Sequence[int], highest: int, now: float, *, gap_ttl_s: float
    ) -> OutboxWatcher:
        """A watcher that has seen ``highest``; ids of the recent range ``present`` lacks are gaps."""
        watcher = cls(seen=highest, gap_ttl_s=gap_ttl_s)
        low = max(1, min(present, default=highest))
        watcher.gaps = {i: now for i in set(range(low, highest + 1)) - set(present)}
        return watcher

    def observe(self, events: Sequence[tuple[int, Sequence[int]]], now: float) -> set[int] | None:
        """Take the events read (``(id, item_ids)``, any order): the ids of the items they changed (empty
        for events about no item, such as a new category: listings and taxonomy still go), or ``None``
        when no event was new."""
        changed: set[int] | None = None
        for event_id, item_ids in sorted(events):
            if event_id > self.seen:
                for missing in range(self.seen + 1, event_id):
                    self.gaps.setdefault(missing, now)
                self.seen = event_id
            elif event_id in self.gaps:
                del self.gaps[event_id]
            else:
                continue  # seen before
            changed = (changed or set()) | set(item_ids)
        for gap, since in list(self.gaps.items()):
            if now - since >= self.gap_ttl_s:
                del self.gaps[gap]
        return changed


#: Reads ``(highest id, recent ids)`` at start; then events after an id or among gaps.
ReadStart = Callable[[], Awaitable[tuple[int, list[int]]]]
ReadEvents = Callable[[int, list[int]], Awaitable[list[tuple[int, list[int]]]]]
#: Counts a request against the per-IP limit: None, or the seconds to wait (429).
RateCheck = Callable[[Scope], int | None]


def if_none_match(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header matches ``etag`` (weak comparison, as RFC 9110 says)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    mine = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == mine for tag in header.split(","))


def body_etag(body: bytes) -> str:
    return 'W/"' + hashlib.sha256(body).hexdigest()[:20] + '"'


class AnswerCache:
    """A replica's ``PublicCache`` kept in step with the outbox (``refresh``: at once after the replica's
    own writes, and every ``poll_s`` in a background task started by the first request). ``poll_s`` 0 or
    ``max_entries`` 0 turns it off."""

    def __init__(
        self,
        *,
        read_start: ReadStart,
        read_events: ReadEvents,
        max_entries: int = 4096,
        ttl_s: float = 300.0,
        poll_s: float = 0.2,
    ) -> None:
        self.read_start, self.read_events = read_start, read_events
        self.cache = PublicCache(max_entries=max_entries if poll_s > 0 else 0, ttl_s=ttl_s)
        self.poll_s, self.ttl_s = poll_s, ttl_s
        self.watcher: OutboxWatcher | None = None
        self._poller: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._wake: asyncio.Event | None = None
        self._used_at = 0.0

    @property
    def enabled(self) -> bool:
        """Answers are served from and kept in the cache (the outbox is being read)."""
        return self.cache.max_entries > 0 and self.watcher is not None

    def start(self) -> None:
        """Note a read; start polling on the running loop if it is not running."""
        self._used_at = time.monotonic()
        if self._poller is None and self.cache.max_entries > 0:
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    async def refresh(self) -> None:
        """Read the outbox now and invalidate what changed."""
        if self.cache.max_entries <= 0:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                now = time.monotonic()
                if self.watcher is None:
                    highest, present = await self.read_start()
                    self.cache.invalidate(None)
                    self.watcher = OutboxWatcher.starting_at(present, highest, now, gap_ttl_s=self.ttl_s)
                    return
                events = await self.read_events(self.watcher.seen, sorted(self.watcher.gaps))
                changed = self.watcher.observe(events, now)
            except Exception:
                if self.watcher is not None:
                    logger.warning("CMS cache: cannot read the outbox; serving from the app", exc_info=True)
                self.watcher = None  # serve from the app until the outbox answers again
                self.cache.invalidate(None)
                return
            if changed is not None:
                self.cache.invalidate(changed)

    def wake(self) -> None:
        """Read the outbox now rather than at the next interval (after this replica's own writes; the
        writer does not wait for it)."""
        if self._wake is not None:
            self._wake.set()

    async def _poll_forever(self) -> None:
        self._wake = asyncio.Event()
        while time.monotonic() - self._used_at < IDLE_STOP_S:
            started = time.monotonic()
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)
            # Woken by writes: at most one outbox read per MIN_REFRESH_GAP_S, however many writes.
            await asyncio.sleep(max(0.0, started + MIN_REFRESH_GAP_S - time.monotonic()))
            self._wake.clear()
        # No read for IDLE_STOP_S: stop reading the outbox, and start afresh (empty) at the next read.
        self.watcher = None
        self.cache.invalidate(None)
        self._poller = None


class HttpCache:
    """The middleware (see the module's docstring), serving and filling ``answers``; ``rate_check``
    counts a hit against its caller's limit; ``max_age_s`` is the ``Cache-Control`` of public answers."""

    def __init__(
        self, app: ASGIApp, *, answers: AnswerCache, rate_check: RateCheck, max_age_s: int = 0
    ) -> None:
        self.app = app
        self.answers, self.cache, self.rate_check = answers, answers.cache, rate_check
        self.public_control = f"public, max-age={max_age_s}" if max_age_s > 0 else "public, no-cache"

    # ------------------------------------------------------------------------------------------ ASGI
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        if scope["type"] == "http" and method not in ("GET", "HEAD"):
            await self._write(scope, receive, send)
            return
        if scope["type"] != "http" or method != "GET":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        anonymous = not any(name in headers for name in CREDENTIAL_HEADERS)
        inm = headers.get(b"if-none-match", b"").decode("latin-1") or None
        kind, item_id, key, template = None, None, "", ""
        if anonymous:
            path = scope["path"].removeprefix(scope.get("root_path", ""))
            for pattern, what, route in CACHEABLE:
                if matched := pattern.fullmatch(path):
                    kind, template = what, route
                    item_id = int(matched["id"]) if what == "item" else None
                    key = path + "?" + scope.get("query_string", b"").decode("latin-1")
                    break
        if kind is not None:
            self.answers.start()  # only anonymous reads of cacheable routes keep the outbox being read
            entry = self.cache.get(key, time.monotonic()) if self.answers.enabled else None
            ray_metrics.inc(CMS_CACHE_REQUESTS, result="hit" if entry else "miss")
            if entry is not None:
                await self._answer_hit(scope, send, entry, inm, template)
                return
        mark = self.cache.mark(item_id if kind == "item" else None)
        held: list[Message] = []
        passthrough = False

        async def buffering_send(message: Message) -> None:
            nonlocal passthrough
            if message["type"] == "http.response.start" and message["status"] != 200:
                passthrough = True  # errors and 304s go out as the app made them
            if passthrough:
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await self._answer_app(
                    send, held, inm, public=kind is not None, key=key, mark=mark, kind=kind, item_id=item_id
                )

        await self.app(scope, receive, buffering_send)

    async def _write(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A write: when it succeeds, drop what it changed from this replica's cache before answering
        (the outbox poll would, up to a poll later; under load, later still)."""
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        if not path.startswith(CONTENT_WRITES):
            await self.app(scope, receive, send)
            return

        async def invalidating_send(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                if matched := ITEM_WRITE.fullmatch(path):
                    self.cache.invalidate([int(matched["id"])])
                else:
                    self.cache.invalidate([] if path == "/items" else None)
            await send(message)

        await self.app(scope, receive, invalidating_send)

    async def _answer_hit(
        self, scope: Scope, send: Send, entry: Entry, inm: str | None, template: str
    ) -> None:
        scope["route"] = _Route(template)  # the metrics middleware tags the request with its template
        retry = self.rate_check(scope)
        if retry is not None:
            body = json.dumps(
                error_body("rate_limited", f"too many requests from this address; retry in {retry} s")
            ).encode()
            await _send(
                send,
                429,
                body,
                [(b"content-type", b"application/json"), (b"retry-after", str(retry).encode())],
            )
            return
        headers = [*self._caching_headers(entry.etag, public=True), (b"x-cache", b"hit")]
        if if_none_match(inm, entry.etag):
            await _send(send, 304, b"", headers)
            return
        await _send(
            send, 200, entry.body, [(b"content-type", entry.content_type.encode("latin-1")), *headers]
        )

    async def _answer_app(
        self,
        send: Send,
        kept: list[Message],
        inm: str | None,
        *,
        public: bool,
        key: str,
        mark: tuple[int, int],
        kind: str | None,
        item_id: int | None,
    ) -> None:
        start, body = kept[0], b"".join(m.get("body", b"") for m in kept[1:])
        headers = [
            (n, v)
            for n, v in start.get("headers", [])
            if n.lower() not in (b"content-length", b"cache-control", b"vary")
        ]
        etag = next((v.decode("latin-1") for n, v in headers if n.lower() == b"etag"), None)
        if etag is None:
            etag = body_etag(body)
            headers.append((b"etag", etag.encode("latin-1")))
        headers += self._caching_headers(None, public=public)
        if public and kind is not None:
            headers.append((b"x-cache", b"miss"))  # also while the replica starts reading the outbox
            if self.answers.enabled:
                content_type = next(
                    (v.decode("latin-1") for n, v in headers if n.lower() == b"content-type"),
                    "application/json",
                )
                self.cache.put(
                    key,
                    Entry(body, etag, content_type, kind, item_id, time.monotonic()),
                    mark=mark,
                )
        if public and if_none_match(inm, etag):
            await _send(send, 304, b"", [(n, v) for n, v in headers if n.lower() != b"content-type"])
            return
        await _send(send, 200, body, headers)

    def _caching_headers(self, etag: str | None, *, public: bool) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"cache-control", (self.public_control if public else "private, no-store").encode()),
            (b"vary", VARY.encode()),
        ]
        if etag is not None:
            headers.append((b"etag", etag.encode("latin-1")))
        return headers


@dataclass(frozen=True)
class _Route:
    """What the metrics middleware reads of the route that answered (``path``: its template)."""

    path: str


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    out = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})
