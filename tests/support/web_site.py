"""A real local web site for the collector's tests and benchmarks: real routes, real files, hostile corners.

``LocalSite`` runs one aiohttp application in a background thread with its own event loop, so sync tests,
other processes (Ray workers) and benchmarks can fetch from it. The same application can listen on several
loopback addresses (all of 127.0.0.0/8 is loopback on Linux) to stand for several hosts::

    with LocalSite(latency_s=0.05) as site:          # listens on 127.0.0.1
        hosts = site.start_hosts(4)                   # and on 127.0.0.2 .. 127.0.0.5
        ...
        [r.path for r in site.requests]               # every request seen, in arrival order

Content comes from ``../shared/data`` beside the repository: feeds, news pages and the trafilatura
evaluation pages. The hostile routes (slow, huge, loops, internal redirects, rate limits...) are listed in
``ROUTES``. Per-client state (``/ratelimited``, ``/flaky``) is keyed by the ``client`` query parameter, or
by the caller's address without one; ``reset()`` starts it over and clears the request log.

Ports: bound to port 0 (the kernel's ephemeral range, above 32768 here), never Ray's 10002-19999.
"""

from __future__ import annotations

import asyncio
import gzip
import html
import re
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiohttp import web

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

ROBOTS_TXT = "User-agent: *\nDisallow: /private/\n"
#: robots.txt for a Host named robots-slow.* (tests point such names at the site with their own resolver).
ROBOTS_SLOW_TXT = "User-agent: *\nDisallow: /private/\nCrawl-delay: 0.3\n"
#: Validators of /etag/page.html.
ETAG = '"pulse-etag-v1"'
LAST_MODIFIED = "Wed, 01 Jan 2025 00:00:00 GMT"
#: Size of /huge and /huge-declared.
HUGE_BYTES = 50 * 1024 * 1024


async def stream_huge_page(request: web.Request) -> web.StreamResponse:
    """``HUGE_BYTES`` of HTML, chunked, with no Content-Length (a client that stops reading ends it)."""
    response = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    line = b"<p>" + b"lorem ipsum " * 5000 + b"</p>\n"
    try:
        await response.write(b"<!DOCTYPE html><html><body>")
        for _ in range(HUGE_BYTES // len(line)):
            await response.write(line)
        await response.write_eof()
    except ConnectionError:
        pass
    return response


#: Decompressed size of /gzip-bomb (served with Content-Encoding: gzip).
BOMB_BYTES = 20 * 1024 * 1024
#: Letters /latin1.html carries, encoded as ISO-8859-1.
LATIN1_TEXT = "Crème brûlée à la française: naïve façade, Ångström, Müller, señor, Æsop."

#: Every route with what it does.
ROUTES: dict[str, str] = {
    "/": "home page linking to every /news page and the feeds",
    "/robots.txt": (
        "disallows /private/ for every agent; by Host name: robots-down.* 503, robots-missing.* 404, "
        "robots-slow.* adds Crawl-delay: 0.3"
    ),
    "/feeds/{name}": "shared feeds; rss/atom/json feed types decided by content",
    "/news/{name}": "shared news pages, text/html; charset=utf-8",
    "/eval/{file}": "trafilatura evaluation pages, text/html with no charset (the page decides)",
    "/sitemap.xml": "urlset of every /news page with lastmod",
    "/sitemap_index.xml": "sitemapindex of /sitemap.xml and /news_sitemap.xml",
    "/news_sitemap.xml": "Google News sitemap for a few /news pages",
    "/sitemap.xml.gz": "/sitemap.xml gzipped, application/gzip",
    "/sitemap.txt": "plain-text sitemap of the /news pages",
    "/etag/page.html": "article answering 304 to a matching If-None-Match or a recent If-Modified-Since",
    "/slow?seconds=N": "sleeps N seconds, then serves HTML",
    "/loop/a": "302 to /loop/b, which 302s back to /loop/a",
    "/redirect-chain/{n}": "n redirects, then HTML",
    "/huge": "50 MB of HTML, chunked, no Content-Length",
    "/huge-declared": "declares Content-Length 50 MB",
    "/gzip-bomb": "20 MB of HTML compressed to a few KB (Content-Encoding: gzip)",
    "/image.png": "a PNG image",
    "/page-as-json": "HTML served as application/json",
    "/malformed.xml": "truncated RSS served as application/rss+xml",
    "/malformed.html": "unclosed tags and garbage bytes, text/html; charset=utf-8",
    "/ratelimited": "429 with Retry-After: 1 the first time per client, 200 HTML after",
    "/ratelimited-long": "429 with Retry-After: 3600, always",
    "/status/{code}": "answers that status",
    "/flaky": "503 twice per client, then 200 HTML",
    "/private/secret.html": "disallowed by robots.txt",
    "/redirect-metadata": "302 to http://169.254.169.254/latest/meta-data/",
    "/redirect-internal": "302 to http://10.0.0.1/admin",
    "/redirect-file": "302 to file:///etc/passwd",
    "/latin1.html": "ISO-8859-1 page declaring <meta charset=iso-8859-1>, no charset in the header",
    "/eval_sitemap.xml?start=&count=": "urlset of a slice of the /eval pages (sorted by file name)",
    "/articles/{i}.html": "BBC News article i (bbc_news.jsonl, cycled past its end) in site boilerplate",
    "/articles_sitemap.xml?start=&count=": "urlset of /articles/{start}.html .. start+count-1",
    "/local_feed.rss": "RSS 2.0 whose five items are /articles/0-4.html on the requesting host",
    "/wire/{variant}.html": "reuters.com2.html with a variant-specific line added: a wire copy",
    "/nul.html": "a UTF-8 article with NUL characters in its title, description and text",
}


class SiteRequest(NamedTuple):
    """One request the site received."""

    path: str
    headers: dict[str, str]
    host: str  # the local address that received it ("127.0.0.2")
    query: str
    at: float  # time.monotonic() on arrival, before any latency


def _page(title: str, body: str) -> bytes:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"</head><body><article><h1>{html.escape(title)}</h1>{body}</article></body></html>\n"
    ).encode()


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _feed_type(path: Path) -> str:
    if path.suffix == ".json":
        return "application/feed+json"
    head = path.read_bytes()[:4096].lower()
    return "application/atom+xml" if b"<feed" in head else "application/rss+xml"


def _title_of(path: Path) -> str:
    match = re.search(rb"<title[^>]*>(.*?)</title>", path.read_bytes(), re.IGNORECASE | re.DOTALL)
    if not match:
        return path.stem
    return html.unescape(match.group(1).decode("utf-8", errors="replace")).strip() or path.stem


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    log: list[SiteRequest] = field(default_factory=list)
    counters: dict[tuple[str, str], int] = field(default_factory=dict)

    def bump(self, route: str, client: str) -> int:
        """How many times ``client`` called ``route`` before (0 the first time)."""
        with self.lock:
            seen = self.counters.get((route, client), 0)
            self.counters[(route, client)] = seen + 1
            return seen


def build_app(
    *, data_dir: Path = SHARED_DATA, state: _State | None = None, latency: list[float] | None = None
) -> web.Application:
    """The site's application. ``latency`` is a one-item list read on every request (mutable from outside)."""
    state = state or _State()
    latency = latency if latency is not None else [0.0]
    feeds = {
        p.name: p
        for folder in ("feedjira", "trafilatura")
        for p in sorted((data_dir / "feeds" / folder).glob("*"))
        if p.suffix in (".xml", ".json", ".atom", ".rss")
    }
    news = {p.name: p for p in sorted((data_dir / "news_html" / "html").glob("*.html"))}
    evals = {p.name: p for p in sorted((data_dir / "trafilatura_eval" / "pages").glob("*.htm*"))}
    news_dates = {name: f"2024-01-{i % 28 + 1:02d}" for i, name in enumerate(news)}
    bomb: list[bytes] = []
    articles: list[dict[str, str]] = []

    def article(i: int) -> dict[str, str]:
        if not articles:
            import json

            with (data_dir / "bbc_news" / "bbc_news.jsonl").open(encoding="utf-8") as lines:
                articles.extend(json.loads(line) for line in lines)
        item = articles[i % len(articles)]
        lap = i // len(articles)
        return item if lap == 0 else {**item, "title": f"{item['title']} ({lap})"}

    def urlset(locs: list[str]) -> bytes:
        body = "".join(f"<url><loc>{html.escape(loc)}</loc></url>" for loc in locs)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{body}</urlset>\n'
        ).encode()

    def window(request: web.Request, total: int) -> range:
        start = int(request.query.get("start", "0"))
        count = int(request.query.get("count", str(total)))
        return range(start, start + count)

    def client_of(request: web.Request) -> str:
        return request.query.get("client") or (request.remote or "?")

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        sock = request.transport.get_extra_info("sockname") if request.transport is not None else None
        entry = SiteRequest(
            path=request.path,
            headers=dict(request.headers),
            host=str(sock[0]) if sock else "?",
            query=request.query_string,
            at=time.monotonic(),
        )
        with state.lock:
            state.log.append(entry)
        if latency[0] > 0:
            await asyncio.sleep(latency[0])
        response: web.StreamResponse = await handler(request)
        return response

    def bytes_response(body: bytes, content_type: str, **headers: str) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type, **headers})

    def html_response(title: str, body: str, status: int = 200) -> web.Response:
        return web.Response(
            body=_page(title, body), status=status, headers={"Content-Type": "text/html; charset=utf-8"}
        )

    def redirect(location: str, status: int = 302) -> web.Response:
        return web.Response(status=status, headers={"Location": location})

    def origin(request: web.Request) -> str:
        return str(request.url.origin())

    async def home(request: web.Request) -> web.Response:
        links = "".join(f'<li><a href="/news/{name}">{html.escape(name)}</a></li>' for name in news)
        page = _page("Local news", f"<ul>{links}</ul>").replace(
            b"</head>",
            b'<link rel="alternate" type="application/rss+xml" href="/feeds/feed2.rss">'
            b'<link rel="alternate" type="application/atom+xml" href="/feeds/feed1.atom"></head>',
        )
        return bytes_response(page, "text/html; charset=utf-8")

    async def robots(request: web.Request) -> web.Response:
        name = request.host.split(":")[0]
        if name.startswith("robots-down."):
            return web.Response(status=503, text="robots.txt is down")
        if name.startswith("robots-missing."):
            return web.Response(status=404, text="no robots.txt")
        if name.startswith("robots-slow."):
            return bytes_response(ROBOTS_SLOW_TXT.encode(), "text/plain; charset=utf-8")
        return bytes_response(ROBOTS_TXT.encode(), "text/plain; charset=utf-8")

    async def feed(request: web.Request) -> web.Response:
        path = feeds.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return bytes_response(path.read_bytes(), _feed_type(path))

    async def news_page(request: web.Request) -> web.Response:
        path = news.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return bytes_response(path.read_bytes(), "text/html; charset=utf-8")

    async def eval_page(request: web.Request) -> web.Response:
        path = evals.get(request.match_info["file"])
        if path is None:
            raise web.HTTPNotFound()
        return bytes_response(path.read_bytes(), "text/html")

    def sitemap_xml(request: web.Request) -> bytes:
        base = origin(request)
        urls = "".join(
            f"<url><loc>{base}/news/{html.escape(name)}</loc><lastmod>{news_dates[name]}</lastmod></url>"
            for name in news
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>\n'
        ).encode()

    async def sitemap(request: web.Request) -> web.Response:
        return bytes_response(sitemap_xml(request), "application/xml")

    async def sitemap_gz(request: web.Request) -> web.Response:
        return bytes_response(gzip.compress(sitemap_xml(request), mtime=0), "application/gzip")

    async def sitemap_txt(request: web.Request) -> web.Response:
        base = origin(request)
        return bytes_response(
            "".join(f"{base}/news/{n}\n" for n in news).encode(), "text/plain; charset=utf-8"
        )

    async def sitemap_index(request: web.Request) -> web.Response:
        base = origin(request)
        entries = "".join(
            f"<sitemap><loc>{base}/{name}</loc><lastmod>2024-02-01</lastmod></sitemap>"
            for name in ("sitemap.xml", "news_sitemap.xml")
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</sitemapindex>\n'
        )
        return bytes_response(body.encode(), "application/xml")

    async def news_sitemap(request: web.Request) -> web.Response:
        base = origin(request)
        items = []
        for name in list(news)[:4]:
            items.append(
                f"<url><loc>{base}/news/{html.escape(name)}</loc><news:news><news:publication>"
                "<news:name>Local News</news:name><news:language>en</news:language></news:publication>"
                f"<news:publication_date>{news_dates[name]}T08:00:00+00:00</news:publication_date>"
                f"<news:title>{html.escape(_title_of(news[name]))}</news:title></news:news></url>"
            )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
            f'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">{"".join(items)}</urlset>\n'
        )
        return bytes_response(body.encode(), "application/xml")

    async def etag_page(request: web.Request) -> web.Response:
        validators = {"ETag": ETAG, "Last-Modified": LAST_MODIFIED}
        match = request.headers.get("If-None-Match")
        if match is not None:
            tags = {t.strip().removeprefix("W/") for t in match.split(",")}
            if ETAG in tags or "*" in tags:
                return web.Response(status=304, headers=validators)
        elif (since := request.headers.get("If-Modified-Since")) is not None:
            try:
                if parsedate_to_datetime(since) >= parsedate_to_datetime(LAST_MODIFIED):
                    return web.Response(status=304, headers=validators)
            except (TypeError, ValueError):
                pass
        page = _page("A page with validators", "<p>This article changes rarely; fetch it conditionally.</p>")
        return bytes_response(page, "text/html; charset=utf-8", **validators)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("seconds", "1")))
        return html_response("Slow page", "<p>Worth the wait.</p>")

    async def loop_a(request: web.Request) -> web.Response:
        return redirect("/loop/b")

    async def loop_b(request: web.Request) -> web.Response:
        return redirect("/loop/a")

    async def chain(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n > 0:
            return redirect(f"/redirect-chain/{n - 1}")
        return html_response("End of the chain", "<p>You made it.</p>")

    async def huge(request: web.Request) -> web.StreamResponse:
        return await stream_huge_page(request)

    async def huge_declared(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
        response.content_length = HUGE_BYTES
        await response.prepare(request)
        block = b" " * 65536
        try:
            for _ in range(HUGE_BYTES // len(block)):
                await response.write(block)
            await response.write_eof()
        except ConnectionError:
            pass
        return response

    async def gzip_bomb(request: web.Request) -> web.Response:
        if not bomb:
            bomb.append(gzip.compress(b"<!DOCTYPE html><html><body>" + b" " * BOMB_BYTES, mtime=0))
        return bytes_response(bomb[0], "text/html; charset=utf-8", **{"Content-Encoding": "gzip"})

    async def image(request: web.Request) -> web.Response:
        return bytes_response(_png(), "image/png")

    async def page_as_json(request: web.Request) -> web.Response:
        return bytes_response(_page("Not JSON", "<p>An HTML page mislabelled.</p>"), "application/json")

    async def malformed_xml(request: web.Request) -> web.Response:
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>Broken feed</title>'
            b"<item><title>An item that never ends</title><link>http://example.com/a</link><descr"
        )
        return bytes_response(body, "application/rss+xml")

    async def malformed_html(request: web.Request) -> web.Response:
        body = (
            b"<html><head><title>Broken page</title><body><div><p>Unclosed paragraph <b>bold <i>italic "
            b"\xff\xfe\x00\x81 garbage bytes <table><tr><td>cell</div></p>"
        )
        return bytes_response(body, "text/html; charset=utf-8")

    async def ratelimited(request: web.Request) -> web.Response:
        if state.bump("ratelimited", client_of(request)) == 0:
            return web.Response(status=429, text="slow down", headers={"Retry-After": "1"})
        return html_response("Rate limited page", "<p>Thank you for waiting.</p>")

    async def ratelimited_long(request: web.Request) -> web.Response:
        return web.Response(status=429, text="come back in an hour", headers={"Retry-After": "3600"})

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        if code in (204, 304) or code < 200:
            return web.Response(status=code)
        return html_response(f"Status {code}", f"<p>This answer is HTTP {code}.</p>", status=code)

    async def flaky(request: web.Request) -> web.Response:
        if state.bump("flaky", client_of(request)) < 2:
            return web.Response(status=503, text="try again")
        return html_response("Flaky page", "<p>Third time lucky.</p>")

    async def private(request: web.Request) -> web.Response:
        return html_response("Secret", "<p>Robots may not read this.</p>")

    async def to_metadata(request: web.Request) -> web.Response:
        return redirect("http://169.254.169.254/latest/meta-data/")

    async def to_internal(request: web.Request) -> web.Response:
        return redirect("http://10.0.0.1/admin")

    async def to_file(request: web.Request) -> web.Response:
        return redirect("file:///etc/passwd")

    async def latin1(request: web.Request) -> web.Response:
        page = (
            "<html><head><meta charset=iso-8859-1><title>Café crème</title></head>"
            f"<body><article><p>{LATIN1_TEXT}</p></article></body></html>"
        ).encode("iso-8859-1")
        return bytes_response(page, "text/html")

    async def eval_sitemap(request: web.Request) -> web.Response:
        names = list(evals)
        picked = [names[i] for i in window(request, len(names)) if i < len(names)]
        return bytes_response(urlset([f"{origin(request)}/eval/{n}" for n in picked]), "application/xml")

    async def article_page(request: web.Request) -> web.Response:
        item = article(int(request.match_info["i"]))
        paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in item["text"].split("\n") if p.strip())
        body = (
            '<header><nav><a href="/">Home</a> | <a href="/articles_sitemap.xml">Sections</a> | '
            '<a href="/about">About us</a></nav></header>'
            f"<main><article><h1>{html.escape(item['title'])}</h1>"
            f'<p class="byline">{html.escape(item["category"].title())} desk</p>{paragraphs}</article></main>'
            "<aside><h2>Most read</h2><ul><li>Weather this weekend</li>"
            "<li>Markets close higher</li></ul></aside>"
            "<footer><p>Copyright 2005 Local News. All rights reserved. Terms and privacy.</p></footer>"
        )
        return html_response(item["title"], body)

    async def articles_sitemap(request: web.Request) -> web.Response:
        base = origin(request)
        return bytes_response(
            urlset([f"{base}/articles/{i}.html" for i in window(request, 100)]), "application/xml"
        )

    async def local_feed(request: web.Request) -> web.Response:
        base = origin(request)
        items = "".join(
            f"<item><title>{html.escape(article(i)['title'])}</title><link>{base}/articles/{i}.html</link>"
            f"<pubDate>Mon, 0{i + 1} Jan 2024 08:00:00 GMT</pubDate></item>"
            for i in range(5)
        )
        body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>Local</title>{items}</channel></rss>'
        return bytes_response(body.encode(), "application/rss+xml")

    async def wire(request: web.Request) -> web.Response:
        variant = html.escape(request.match_info["variant"])
        page = (
            news["reuters.com2.html"]
            .read_bytes()
            .replace(b"</title>", f" | Wire edition {variant}</title>".encode(), 1)
        )
        return bytes_response(page, "text/html; charset=utf-8")

    async def nul_page(request: web.Request) -> web.Response:
        text = "A council meeting\x00 decided on the new bridge budget after a long debate. " * 4
        page = (
            '<html><head><title>Bridge\x00 budget</title><meta name="description" content="Bridge\x00 news">'
            f"</head><body><article><h1>Bridge budget</h1><p>{text}</p></article></body></html>"
        ).encode()
        return bytes_response(page, "text/html; charset=utf-8")

    app = web.Application(middlewares=[record])
    app.add_routes(
        [
            web.get("/", home),
            web.get("/robots.txt", robots),
            web.get("/feeds/{name}", feed),
            web.get("/news/{name}", news_page),
            web.get("/eval/{file}", eval_page),
            web.get("/sitemap.xml", sitemap),
            web.get("/sitemap.xml.gz", sitemap_gz),
            web.get("/sitemap.txt", sitemap_txt),
            web.get("/sitemap_index.xml", sitemap_index),
            web.get("/news_sitemap.xml", news_sitemap),
            web.get("/etag/page.html", etag_page),
            web.get("/slow", slow),
            web.get("/loop/a", loop_a),
            web.get("/loop/b", loop_b),
            web.get("/redirect-chain/{n:\\d+}", chain),
            web.get("/huge", huge),
            web.get("/huge-declared", huge_declared),
            web.get("/gzip-bomb", gzip_bomb),
            web.get("/image.png", image),
            web.get("/page-as-json", page_as_json),
            web.get("/malformed.xml", malformed_xml),
            web.get("/malformed.html", malformed_html),
            web.get("/ratelimited", ratelimited),
            web.get("/ratelimited-long", ratelimited_long),
            web.get("/status/{code:\\d{3}}", status),
            web.get("/flaky", flaky),
            web.get("/private/secret.html", private),
            web.get("/redirect-metadata", to_metadata),
            web.get("/redirect-internal", to_internal),
            web.get("/redirect-file", to_file),
            web.get("/latin1.html", latin1),
            web.get("/eval_sitemap.xml", eval_sitemap),
            web.get("/articles/{i:\\d+}.html", article_page),
            web.get("/articles_sitemap.xml", articles_sitemap),
            web.get("/local_feed.rss", local_feed),
            web.get("/wire/{variant}.html", wire),
            web.get("/nul.html", nul_page),
        ]
    )
    return app


class LocalSite:
    """The site served from a background thread; usable as a context manager (starts on 127.0.0.1)."""

    def __init__(self, *, latency_s: float = 0.0, data_dir: Path = SHARED_DATA) -> None:
        self._state = _State()
        self._latency = [latency_s]
        self._app = build_app(data_dir=data_dir, state=self._state, latency=self._latency)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._bases: dict[str, str] = {}

    # ---------------------------------------------------------------- lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host`` (once per host) and return its base URL, ``http://host:port``."""
        if host in self._bases:
            return self._bases[host]
        loop = self._ensure_loop()
        base = asyncio.run_coroutine_threadsafe(self._listen(host, port), loop).result(timeout=30)
        self._bases[host] = base
        return base

    def start_hosts(self, count: int, *, first: int = 2) -> list[str]:
        """Listen on ``127.0.0.{first}`` .. ``127.0.0.{first + count - 1}``; their base URLs."""
        return [self.start(f"127.0.0.{first + i}") for i in range(count)]

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=30)
            self._runner = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
        self._loop = self._thread = None
        self._bases.clear()

    def __enter__(self) -> LocalSite:
        if not self._bases:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="local-site", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    async def _listen(self, host: str, port: int) -> str:
        if self._runner is None:
            runner = web.AppRunner(
                self._app,
                handle_signals=False,
                shutdown_timeout=1.0,
                handler_cancellation=True,
                access_log=None,
            )
            await runner.setup()
            self._runner = runner
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        site = web.SockSite(self._runner, sock)
        await site.start()
        return f"http://{host}:{sock.getsockname()[1]}"

    # ---------------------------------------------------------------- use

    @property
    def base_url(self) -> str:
        """The first address started."""
        if not self._bases:
            raise RuntimeError("the site is not started; call start() first")
        return next(iter(self._bases.values()))

    @property
    def base_urls(self) -> list[str]:
        return list(self._bases.values())

    def url(self, path: str, *, host: str | None = None) -> str:
        base = self._bases[host] if host is not None else self.base_url
        return base + (path if path.startswith("/") else "/" + path)

    @property
    def latency_s(self) -> float:
        return self._latency[0]

    @latency_s.setter
    def latency_s(self, value: float) -> None:
        self._latency[0] = value

    @property
    def requests(self) -> list[SiteRequest]:
        """A copy of the request log, in arrival order."""
        with self._state.lock:
            return list(self._state.log)

    def requests_for(self, path: str) -> list[SiteRequest]:
        return [r for r in self.requests if r.path == path]

    def reset(self) -> None:
        """Forget the request log and every per-client counter."""
        with self._state.lock:
            self._state.log.clear()
            self._state.counters.clear()


@pytest.fixture(scope="session")
def local_site() -> Iterator[LocalSite]:
    """The site on 127.0.0.1 for the whole session; ``start_hosts`` adds loopback hosts on demand."""
    site = LocalSite()
    site.start()
    try:
        yield site
    finally:
        site.stop()
