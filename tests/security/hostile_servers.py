"""Real local servers for the hostile-input tests: a hostile web site, a decoy that counts hits, and a
FastAPI app served by uvicorn on a real port.

* ``HostileSite`` (127.0.0.1, the one host:port the collector is allowed to reach) serves redirects to
  internal addresses, feeds and sitemaps linking to them, XML bombs, gzip bombs, a self-referencing
  sitemap index, 60,000-entry sitemaps, truncated XML, wrong content types and a 50 MB page.
* ``Decoy`` listens on another port of 127.0.0.1 (and on [::1] when the machine has IPv6 loopback): every
  request it receives is a request that SSRF guards should have stopped; ``hits`` must stay 0.
* ``AppServer`` runs an ASGI app (the CMS or trends FastAPI app built without Serve) under uvicorn in a
  thread, so clients talk real HTTP to it.

Everything binds port 0 (the kernel's ephemeral range), never Ray's ports.
"""

from __future__ import annotations

import asyncio
import html
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from aiohttp import web
from sqlalchemy.ext.asyncio import async_sessionmaker

from tests.support.web_site import stream_huge_page

#: Decompressed size of the gzip bombs: 1 GiB of zeros, about 1 MB compressed.
BOMB_BYTES = 1 << 30
#: Entries of /big-sitemap.xml.
BIG_SITEMAP_ENTRIES = 60_000

ARTICLE = (
    "<p>The city council approved the budget for the new bridge on Tuesday after a long debate about "
    "its cost, its route across the river and the traffic it will carry.</p>"
) * 6

_bomb: list[bytes] = []


def gzip_bomb() -> bytes:
    """``BOMB_BYTES`` of zeros as one gzip member (built once per process, ~3 s)."""
    if not _bomb:
        compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        block = bytes(1 << 20)
        parts = [compressor.compress(block) for _ in range(BOMB_BYTES >> 20)]
        parts.append(compressor.flush())
        _bomb.append(b"".join(parts))
    return _bomb[0]


def billion_laughs(root: str) -> bytes:
    """An XML document whose DTD defines ten nested entities, each ten of the previous: 10^9 'lol's."""
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    return f'<?xml version="1.0"?>\n<!DOCTYPE {root.split()[0].strip("<>")} [{entities}]>\n'.encode()


def xxe(root: str) -> bytes:
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE {root.split()[0].strip("<>")} ['
        '<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    ).encode()


SITEMAP_NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def urlset(locs: list[str]) -> bytes:
    body = "".join(f"<url><loc>{html.escape(loc)}</loc></url>" for loc in locs)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {SITEMAP_NS}>{body}</urlset>\n'.encode()


def sitemap_index(locs: list[str]) -> bytes:
    body = "".join(f"<sitemap><loc>{html.escape(loc)}</loc></sitemap>" for loc in locs)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex {SITEMAP_NS}>{body}</sitemapindex>\n'.encode()
    )


def rss(links: list[str], *, title: str = "Hostile feed") -> bytes:
    items = "".join(
        f"<item><title>Item {i}</title><link>{html.escape(link)}</link></item>"
        for i, link in enumerate(links)
    )
    channel = f"<channel><title>{title}</title>{items}</channel>"
    return f'<?xml version="1.0"?><rss version="2.0">{channel}</rss>'.encode()


class _Threaded:
    """An aiohttp application served from its own event loop in a daemon thread."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hostile-server", daemon=True)
        self._runner: web.AppRunner | None = None
        self.bases: list[str] = []

    def start(self, hosts: tuple[str, ...] = ("127.0.0.1",)) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(hosts), self._loop).result(timeout=30)

    async def _listen(self, hosts: tuple[str, ...]) -> None:
        self._runner = web.AppRunner(self._app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        port = 0
        for host in hosts:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            port = sock.getsockname()[1]  # the same port on every address
            await web.SockSite(self._runner, sock).start()
            self.bases.append(f"http://{'[' + host + ']' if ':' in host else host}:{port}")

    @property
    def port(self) -> int:
        return int(self.bases[0].rsplit(":", 1)[1])

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


class Decoy(_Threaded):
    """Answers every path with a small page and counts the requests: each one is an SSRF that got through."""

    def __init__(self) -> None:
        self.requests: list[str] = []

        async def any_path(request: web.Request) -> web.Response:
            self.requests.append(f"{request.host}{request.path_qs}")
            return web.Response(text="internal secret", content_type="text/html")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", any_path)
        super().__init__(app)

    @property
    def hits(self) -> int:
        return len(self.requests)


class HostileSite(_Threaded):
    """The allowed site. ``targets`` are the internal URLs its redirects, feeds and sitemaps point at."""

    def __init__(self, targets: list[str]) -> None:
        self.targets = targets
        self.requests: list[str] = []

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            self.requests.append(request.path_qs)
            response: web.StreamResponse = await handler(request)
            return response

        app = web.Application(middlewares=[record])
        app.add_routes(
            [
                web.get("/robots.txt", self._robots),
                web.get("/article.html", self._article),
                web.get("/to/{n:\\d+}", self._redirect),
                web.get("/private-links.rss", self._private_feed),
                web.get("/private-links.xml", self._private_sitemap),
                web.get("/private-index.xml", self._private_index),
                web.get("/laughs.rss", self._laughs_feed),
                web.get("/laughs.xml", self._laughs_sitemap),
                web.get("/xxe.rss", self._xxe_feed),
                web.get("/xxe.xml", self._xxe_sitemap),
                web.get("/bomb.xml.gz", self._bomb_sitemap),
                web.get("/bomb.html", self._bomb_page),
                web.get("/loop-index.xml", self._loop_index),
                web.get("/loop-index-b.xml", self._loop_index_b),
                web.get("/big-sitemap.xml", self._big_sitemap),
                web.get("/truncated.rss", self._truncated_feed),
                web.get("/truncated.xml", self._truncated_sitemap),
                web.get("/feed-as-png.rss", self._feed_as_png),
                web.get("/sitemap-as-html.xml", self._sitemap_as_html),
                web.get("/page-as-zip.html", self._page_as_zip),
                web.get("/deep.html", self._deep_page),
                web.get("/huge.html", self._huge),
            ]
        )
        super().__init__(app)

    def url(self, path: str) -> str:
        return self.bases[0] + path

    # ------------------------------------------------------------------ routes

    @staticmethod
    def _bytes(body: bytes, content_type: str, **headers: str) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type, **headers})

    async def _robots(self, request: web.Request) -> web.Response:
        return self._bytes(b"User-agent: *\nAllow: /\n", "text/plain")

    async def _article(self, request: web.Request) -> web.Response:
        page = (
            f"<html><head><title>Bridge budget</title></head><body><article><h1>Bridge budget</h1>{ARTICLE}"
        )
        return self._bytes((page + "</article></body></html>").encode(), "text/html; charset=utf-8")

    async def _redirect(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": self.targets[int(request.match_info["n"])]})

    async def _private_feed(self, request: web.Request) -> web.Response:
        return self._bytes(rss([*self.targets, self.url("/article.html")]), "application/rss+xml")

    async def _private_sitemap(self, request: web.Request) -> web.Response:
        return self._bytes(urlset([*self.targets, self.url("/article.html")]), "application/xml")

    async def _private_index(self, request: web.Request) -> web.Response:
        return self._bytes(
            sitemap_index([t.rstrip("/") + "/sitemap.xml" for t in self.targets]), "application/xml"
        )

    async def _laughs_feed(self, request: web.Request) -> web.Response:
        body = (
            billion_laughs("rss")
            + (
                '<rss version="2.0"><channel><title>&lol9;</title><item><title>&lol9;</title>'
                f"<link>{self.url('/article.html')}</link><description>&lol9;</description></item></channel></rss>"
            ).encode()
        )
        return self._bytes(body, "application/rss+xml")

    async def _laughs_sitemap(self, request: web.Request) -> web.Response:
        body = (
            billion_laughs("urlset") + f"<urlset {SITEMAP_NS}><url><loc>&lol9;</loc></url></urlset>".encode()
        )
        return self._bytes(body, "application/xml")

    async def _xxe_feed(self, request: web.Request) -> web.Response:
        body = (
            xxe("rss")
            + (
                '<rss version="2.0"><channel><title>x</title><item><title>&xxe;</title>'
                f"<link>{self.url('/article.html')}</link><description>&xxe;</description></item></channel></rss>"
            ).encode()
        )
        return self._bytes(body, "application/rss+xml")

    async def _xxe_sitemap(self, request: web.Request) -> web.Response:
        body = xxe("urlset") + f"<urlset {SITEMAP_NS}><url><loc>&xxe;</loc></url></urlset>".encode()
        return self._bytes(body, "application/xml")

    async def _bomb_sitemap(self, request: web.Request) -> web.Response:
        return self._bytes(gzip_bomb(), "application/gzip")

    async def _bomb_page(self, request: web.Request) -> web.Response:
        return self._bytes(gzip_bomb(), "text/html; charset=utf-8", **{"Content-Encoding": "gzip"})

    async def _loop_index(self, request: web.Request) -> web.Response:
        locs = [self.url("/loop-index.xml"), self.url("/loop-index-b.xml")]
        return self._bytes(sitemap_index(locs), "application/xml")

    async def _loop_index_b(self, request: web.Request) -> web.Response:
        return self._bytes(sitemap_index([self.url("/loop-index.xml")]), "application/xml")

    async def _big_sitemap(self, request: web.Request) -> web.Response:
        n = int(request.query.get("n", BIG_SITEMAP_ENTRIES))
        locs = [self.url("/article.html")] + [self.url(f"/missing/{i}.html") for i in range(n - 1)]
        return self._bytes(urlset(locs), "application/xml")

    async def _truncated_feed(self, request: web.Request) -> web.Response:
        body = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Cut</title><item><title>Half'
        return self._bytes(body, "application/rss+xml")

    async def _truncated_sitemap(self, request: web.Request) -> web.Response:
        return self._bytes(f'<?xml version="1.0"?><urlset {SITEMAP_NS}><url><lo'.encode(), "application/xml")

    async def _feed_as_png(self, request: web.Request) -> web.Response:
        return self._bytes(rss([self.url("/article.html")]), "image/png")

    async def _sitemap_as_html(self, request: web.Request) -> web.Response:
        return self._bytes(urlset([self.url("/article.html")]), "text/html")

    async def _page_as_zip(self, request: web.Request) -> web.Response:
        return self._bytes(b"PK\x03\x04" + bytes(200), "application/zip")

    async def _deep_page(self, request: web.Request) -> web.Response:
        depth = 100_000
        page = "<html><head><title>Deep</title></head><body>" + "<div>" * depth + ARTICLE + "</div>" * depth
        return self._bytes((page + "</body></html>").encode(), "text/html; charset=utf-8")

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        return await stream_huge_page(request)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AppServer:
    """An ASGI app under uvicorn on 127.0.0.1 in a daemon thread; ``base`` is its URL."""

    def __init__(self, app: Any) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="app-server", daemon=True)

    def __enter__(self) -> AppServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the app server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


# --------------------------------------------------------------------------- the CMS over real HTTP

CMS_SECRET = "hostile-input-secret-" + "x" * 40
CMS_PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def cms_server(  # type: ignore[no-untyped-def]
    database_url: str, engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The CMS FastAPI app (``build_api``, as each Serve replica builds it) under uvicorn with its default
    security settings (private webhook targets refused); an admin and an author logged in.
    ``{"base": url, "headers": {"admin": {...}, "author": {...}}}``."""
    from cluster.ground.passwords import hash_password
    from serve_apps.cms.app import build_api
    from serve_apps.cms.args import CmsArgs
    from serve_apps.cms.context import CmsContext
    from storage.cms_users import UserRepository
    from storage.database import make_async_engine
    from tests.conftest import CMS_TABLES, truncate

    truncate(engine, CMS_TABLES)

    async def author() -> None:
        db = make_async_engine(database_url, pool_size=1)
        try:
            async with async_sessionmaker(db)() as session, session.begin():
                await UserRepository(session).create(
                    "author@pulse.test", "Author", hash_password(CMS_PASSWORD), "author"
                )
        finally:
            await db.dispose()

    asyncio.run(author())
    args = CmsArgs(
        database_url=database_url,
        jwt_secret=CMS_SECRET,
        admin_email="admin@pulse.test",
        admin_password=CMS_PASSWORD,
        rate_per_key="100000/minute",
        rate_per_ip="100000/minute",
        scheduler=False,
        embed_on_publish=False,
        storage_uri=str(tmp_path_factory.mktemp("cms-storage")),
    )
    with AppServer(build_api(CmsContext(args))) as server:
        headers = {}
        for who in ("admin", "author"):
            resp = httpx.post(
                f"{server.base}/auth/login", json={"email": f"{who}@pulse.test", "password": CMS_PASSWORD}
            )
            assert resp.status_code == 200, resp.text
            headers[who] = {"Authorization": f"Bearer {resp.json()['access_token']}"}
        yield {"base": server.base, "headers": headers}
