"""Hostile input to the collector and the webhook targets (issue 20, part 4): SSRF and bombs.

Proves, through the commands a user runs (`pulse sources add`, `pulse collect --force` in this process,
on the session's real Ray, real PostgreSQL and real local HTTP servers), that:

* **SSRF**: no URL-taking input reaches an internal address. The hostile site (127.0.0.1, the one
  host:port the collector is allowed, ``PULSE_COLLECT__ALLOW_NETWORKS=["127.0.0.1:<port>"]``) redirects
  to, and lists in its feeds, sitemaps and sitemap index, a decoy on another port of 127.0.0.1, [::1],
  [::ffff:127.0.0.1], 0.0.0.0, 2130706433, 0177.0.0.1, 0x7f.1, localhost, a user-info trick,
  169.254.169.254, 10.0.0.7, [fd00::1] and file:///etc/passwd; the same URLs are also given as source
  URIs. Each is refused and recorded (quarantine and frontier: ``blocked_address`` / ``blocked_scheme``),
  and the decoy counts 0 hits. Names resolving to internal addresses (through the fetcher's resolver
  seam) are refused at connect time, by the collector and by the webhook sender's resolver. Webhook
  targets (CMS API, default settings) get a 422 for every form.
* **Bombs and malformed input**: billion-laughs and XXE feeds and sitemaps, a gzip bomb (1 MB expanding
  to 1 GiB) as a sitemap file and as a gzip-encoded page, a sitemap index that lists itself, a
  60,000-entry sitemap, truncated XML, wrong content types, 100,000 nested elements and a 50 MB page:
  each is quarantined with its reason (or its harmless part kept), nothing from /etc/passwd is stored,
  the run finishes within bounds and the collector's memory stays bounded.

Each test reports the ``hostile`` figure (group, inputs, refused, stored_intact, server_errors,
fetched_private). Takes about 60-80 s on 2 cores (most of it the session's Ray start and two collect runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from cluster.ground.address_guard import AllowList, check_url
from cluster.ground.errors import BlockedAddress, BlockedURL, InvalidAllowList
from cluster.ground.settings import get_settings
from cluster.ground.webhook_targets import public_resolver
from jobs.collect.fetch import Fetcher, FetchPolicy, FetchRequest
from jobs.urls import canonical_url
from tests.integration.helpers import cli_runner
from tests.integration.test_collect_job import query
from tests.security.hostile_servers import Decoy, HostileSite
from tests.security.hostile_servers import cms_server as cms_server

pytestmark = [pytest.mark.security]

BLOCKED = {"blocked_address", "blocked_scheme", "invalid_url"}


def internal_targets(decoy: Decoy, allowed_port: int) -> list[str]:
    """Internal URLs in every spelling; those on ``decoy.port`` would reach the decoy if let through."""
    p = decoy.port
    return [
        f"http://127.0.0.1:{p}/admin",  # loopback, another port of the allowed address
        f"http://[::1]:{p}/admin",
        f"http://[::ffff:127.0.0.1]:{p}/admin",
        f"http://0.0.0.0:{p}/admin",
        f"http://2130706433:{p}/admin",  # 127.0.0.1 as one decimal number
        f"http://0177.0.0.1:{p}/admin",  # octal
        f"http://0x7f.1:{p}/admin",  # hexadecimal, short form
        f"http://localhost:{p}/admin",
        f"http://127.0.0.1:{allowed_port}@127.0.0.1:{p}/admin",  # the allowed host:port as user info
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/admin",
        "http://[fd00::1]/admin",
        "file:///etc/passwd",
    ]


@pytest.fixture(scope="module")
def decoy() -> Iterator[Decoy]:
    server = Decoy()
    server.start(("127.0.0.1", "::1"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def site(decoy: Decoy) -> Iterator[HostileSite]:
    server = HostileSite([])
    server.start()
    server.targets.extend(internal_targets(decoy, server.port))
    yield server
    server.stop()


@pytest.fixture
def pulse(  # type: ignore[no-untyped-def]
    clean_db: str, site: HostileSite, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
):
    """`pulse ARGS...` in this process, allowed onto exactly the hostile site's host:port."""
    env = {
        "PULSE_DATABASE__URL": clean_db,
        "PULSE_STORAGE__URI": str(tmp_path / "storage"),
        "PULSE_VAR_DIR": str(tmp_path / "var"),
        "PULSE_COLLECT__ALLOW_NETWORKS": f'["127.0.0.1:{site.port}"]',
        "PULSE_COLLECT__PER_HOST_DELAY_S": "0",
        "PULSE_COLLECT__CONNECT_TIMEOUT_S": "2",
        "PULSE_COLLECT__TIMEOUT_S": "20",
        "PULSE_COLLECT__MAX_RETRIES": "0",
        "PULSE_COLLECT__FETCH_PARTITIONS": "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield cli_runner(capsys)
    get_settings.cache_clear()


def _add(pulse: Any, name: str, kind: str, uri: str, *extra: str) -> bool:
    """Register a source; False when `pulse sources add` refuses it (exit 2, one line)."""
    code, _, err = pulse("sources", "add", name, kind, uri, *extra)
    assert code in (0, 2), err
    return code == 0


def _collect(pulse: Any) -> float:
    started = time.monotonic()
    code, _, err = pulse("collect", "--force", "--no-progress")
    assert code == 0, err
    return time.monotonic() - started


# --------------------------------------------------------------------------- SSRF


def test_ssrf_through_sources_redirects_feeds_and_sitemaps_is_refused_and_recorded(
    ray_session: None, pulse: Any, site: HostileSite, decoy: Decoy, clean_db: str, figure: Any
) -> None:
    decoy.requests.clear()
    targets = site.targets
    added_direct = [_add(pulse, f"direct-{i}", "page", url) for i, url in enumerate(targets)]
    for i in range(len(targets)):
        assert _add(pulse, f"redirect-{i}", "page", site.url(f"/to/{i}"))
    assert _add(pulse, "feed-links", "feed", site.url("/private-links.rss"))
    assert _add(pulse, "sitemap-links", "sitemap", site.url("/private-links.xml"))
    assert _add(pulse, "index-links", "sitemap", site.url("/private-index.xml"))
    _collect(pulse)

    allowed = site.bases[0]
    frontier = query(clean_db, "SELECT url, status, error, http_status FROM crawl_urls")
    internal = [row for row in frontier if not row[0].startswith(allowed + "/")]
    # Every internal URL that entered the frontier (as a source or from a listing) failed as refused,
    # without an HTTP status: no request was made.
    assert internal, "no internal URL reached the frontier: the test lost its inputs"
    for url, status, error, http_status in internal:
        assert (status, error, http_status) in {("failed", e, None) for e in BLOCKED}, url
    quarantined = dict(query(clean_db, "SELECT source_ref, reason FROM quarantine WHERE job = 'collect'"))
    for url, *_ in internal:
        assert quarantined.get(url) in BLOCKED, url
    # Redirects from the allowed site to each internal address: refused at the hop, recorded.
    for i, target in enumerate(targets):
        assert quarantined.get(site.url(f"/to/{i}")) in BLOCKED, target
    # The one real article of the feed and the sitemap is collected: the allow-list works.
    stored = [url for (url,) in query(clean_db, "SELECT canonical_url FROM documents")]
    assert stored == [site.url("/article.html")]
    assert decoy.hits == 0, decoy.requests
    # Each input counted once: a source `pulse sources add` turned down or whose row failed as refused; a
    # redirect quarantined as refused; a feed, sitemap or index entry dropped before the frontier (not
    # http, not a valid URL) or whose frontier row failed as refused (a URL listed in several places is
    # one row).
    rows = {url: (status, error) for url, status, error, _ in frontier}

    def refused_url(url: str) -> bool:
        keys = [url]
        with contextlib.suppress(ValueError):
            keys.append(canonical_url(url))
        found = [rows[k] for k in keys if k in rows]
        return not found or all(status == "failed" and error in BLOCKED for status, error in found)

    refused = sum(
        1 for added, url in zip(added_direct, targets, strict=True) if not added or refused_url(url)
    )
    refused += sum(1 for i in range(len(targets)) if quarantined.get(site.url(f"/to/{i}")) in BLOCKED)
    refused += 2 * sum(1 for url in targets if refused_url(url))  # its feed item and its sitemap entry
    refused += sum(1 for url in targets if refused_url(url.rstrip("/") + "/sitemap.xml"))  # index entry
    figure(
        "hostile",
        group="ssrf",
        inputs=5 * len(targets),  # as a source, behind a redirect, in a feed, a sitemap, a sitemap index
        refused=refused,
        stored_intact=len(stored),
        server_errors=0,
        fetched_private=decoy.hits,
    )


class MapResolver(AbstractResolver):
    """A DNS resolver seam: fixed answers per name (a name made to resolve to internal addresses)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self._answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self._answers.get(host)
        if addresses is None:
            raise OSError(f"{host} does not resolve")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


def test_names_resolving_to_internal_addresses_are_refused_at_connect_time(
    site: HostileSite, decoy: Decoy, figure: Any
) -> None:
    decoy.requests.clear()
    p = decoy.port
    answers = {
        "intranet.pulse.test": ["127.0.0.1"],  # the allowed address, but another port
        "v6.pulse.test": ["::1"],
        "metadata.pulse.test": ["169.254.169.254"],
        "mapped.pulse.test": ["::ffff:127.0.0.1"],
        "rebind.pulse.test": ["10.0.0.7", "127.0.0.1"],
        "site.pulse.test": ["127.0.0.1"],  # the allowed endpoint under a name: still only its port
    }
    urls = [f"http://{name}:{p}/admin" for name in answers] + [
        f"http://site.pulse.test:{site.port}/article.html"
    ]
    policy = FetchPolicy(
        per_host_delay_s=0,
        connect_timeout_s=2,
        total_timeout_s=5,
        max_retries=0,
        respect_robots=False,
        allow_networks=(f"127.0.0.1:{site.port}",),
    )

    async def run() -> list[Any]:
        async with Fetcher(policy, resolver=MapResolver(answers)) as fetcher:
            return [await fetcher.fetch(FetchRequest(url=url, kind="page")) for url in urls]

    async def webhook_delivery() -> int:
        """The webhook sender's resolver (public addresses only) on the same names: each refused."""
        resolver = public_resolver(MapResolver(answers))
        refused = 0
        for name in answers:
            try:
                await resolver.resolve(name, p, socket.AF_UNSPEC)
            except BlockedAddress:
                refused += 1
        return refused

    results = asyncio.run(run())
    webhook_refused = asyncio.run(webhook_delivery())
    assert webhook_refused == len(answers)
    errors = {r.url: r.error for r in results}
    for url in urls[:-1]:
        assert errors[url] == "blocked_address", (url, errors[url])
    assert errors[urls[-1]] is None  # the allowed host:port is reachable by a name too
    assert decoy.hits == 0, decoy.requests
    figure(
        "hostile",
        group="ssrf",
        inputs=len(urls) + len(answers),
        refused=sum(1 for url in urls[:-1] if errors[url] == "blocked_address") + webhook_refused,
        stored_intact=1,
        server_errors=0,
        fetched_private=decoy.hits,
    )


def test_host_port_allow_list_entries_allow_that_port_only() -> None:
    """The allow-list setting can name one service (host:port): the test site on 127.0.0.1 must not open
    PostgreSQL (5432), the Ray dashboard (8265) or anything else on the same address."""
    allow = AllowList.from_strings(("127.0.0.1:8080", "[::1]:8080", "intranet.example:8443"))
    check_url("http://127.0.0.1:8080/feed", allow, hint="h")
    check_url("http://[::1]:8080/", allow, hint="h")
    check_url("http://[::ffff:127.0.0.1]:8080/", allow, hint="h")
    check_url("https://intranet.example:8443/", allow, hint="h")
    for url in (
        "http://127.0.0.1:5432/",
        "http://127.0.0.1/",  # port 80
        "http://[::1]:8265/",
        "http://2130706433:5432/",
        "http://127.0.0.1:8080@127.0.0.1:5432/",
        "http://localhost:8080/",  # names are not addresses: localhost is not allowed by 127.0.0.1:8080
    ):
        with pytest.raises(BlockedURL) as refused:
            check_url(url, allow, hint="h")
        assert refused.value.code == "blocked_address", url
    for bad in ("127.0.0.1:0", "127.0.0.1:70000", "[intranet]:80", "a b:80"):
        with pytest.raises(InvalidAllowList):
            AllowList.from_strings((bad,))


def test_webhook_targets_at_internal_addresses_get_422(
    cms_server: dict[str, Any], decoy: Decoy, figure: Any
) -> None:
    """The CMS API with its default settings: every internal spelling is refused at creation, in the one
    error shape, and nothing is stored."""
    decoy.requests.clear()
    base, admin = cms_server["base"], cms_server["headers"]["admin"]
    targets = [t for t in internal_targets(decoy, 0) if t.startswith("http")]
    targets.append(f"http://LOCALHOST.:{decoy.port}/hook")
    targets.append(f"http://api.localhost:{decoy.port}/hook")
    own = socket.gethostname()
    try:
        own_addresses = {info[4][0] for info in socket.getaddrinfo(own, None)}
    except OSError:
        own_addresses = set()
    if own_addresses and all(not _public(a) for a in own_addresses):
        targets.append(f"http://{own}:{decoy.port}/hook")  # a real name resolving to this machine
    before = httpx.get(f"{base}/webhooks", headers=admin).json()
    statuses = []
    for url in targets:
        resp = httpx.post(f"{base}/webhooks", json={"url": url, "events": []}, headers=admin)
        statuses.append(resp.status_code)
        assert resp.status_code == 422, (url, resp.text)
        error = resp.json()["error"]
        assert set(error) == {"code", "message"} and error["code"] == "invalid_request", url
    assert httpx.get(f"{base}/webhooks", headers=admin).json() == before
    assert decoy.hits == 0
    figure(
        "hostile",
        group="ssrf",
        inputs=len(targets),
        refused=statuses.count(422),
        stored_intact=0,
        server_errors=sum(1 for s in statuses if s >= 500),
        fetched_private=decoy.hits,
    )


def _public(address: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(address.split("%")[0]).is_global


# --------------------------------------------------------------------------- bombs and malformed input

#: Source (kind, path on the hostile site) -> the reasons its quarantine row may carry (None: not
#: quarantined, its harmless part kept or nothing found).
BOMBS: dict[tuple[str, str], set[str | None]] = {
    ("feed", "/laughs.rss"): {None, "malformed_feed"},
    ("sitemap", "/laughs.xml"): {"malformed_sitemap"},  # entities declared: flagged, never expanded
    ("feed", "/xxe.rss"): {None, "malformed_feed"},
    ("sitemap", "/xxe.xml"): {"malformed_sitemap"},
    ("sitemap", "/bomb.xml.gz"): {"too_large"},
    ("page", "/bomb.html"): {"too_large"},
    ("sitemap", "/loop-index.xml"): {None},
    ("feed", "/truncated.rss"): {"malformed_feed"},
    ("sitemap", "/truncated.xml"): {"malformed_sitemap"},
    ("feed", "/feed-as-png.rss"): {"bad_content_type"},
    ("sitemap", "/sitemap-as-html.xml"): {"bad_content_type"},
    ("page", "/page-as-zip.html"): {"bad_content_type"},
    ("page", "/deep.html"): {None, "no_content"},
    ("page", "/huge.html"): {"too_large"},
    ("sitemap", "/big-sitemap.xml"): {None},
}


def test_bombs_and_malformed_listings_are_quarantined_within_bounds(
    ray_session: None, pulse: Any, site: HostileSite, decoy: Decoy, clean_db: str, figure: Any
) -> None:
    decoy.requests.clear()
    for i, (kind, path) in enumerate(BOMBS):
        extra = ("--max-items", "5") if path == "/big-sitemap.xml" else ()
        assert _add(pulse, f"bomb-{i}", kind, site.url(path), *extra)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = _collect(pulse)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024

    quarantined = dict(query(clean_db, "SELECT source_ref, reason FROM quarantine WHERE job = 'collect'"))
    for (_, path), reasons in BOMBS.items():
        assert quarantined.get(site.url(path)) in reasons, (path, quarantined.get(site.url(path)))
    # The self-listing index is read once per run (the frontier keys URLs), its child too.
    assert site.requests.count("/loop-index.xml") == 1 and site.requests.count("/loop-index-b.xml") == 1
    # 60,000 entries parsed, five taken (--max-items), nothing else queued.
    frontier = dict(query(clean_db, "SELECT url, status FROM crawl_urls"))
    assert sum(1 for url in frontier if "/missing/" in url) <= 4
    assert "pending" not in frontier.values()
    # Nothing of /etc/passwd, and no expanded entity, anywhere in what was stored.
    docs = query(clean_db, "SELECT canonical_url, title, text FROM documents")
    for url, title, text in docs:
        blob = f"{url} {title} {text}"
        assert "root:" not in blob and "lollollol" not in blob, url
    runs = query(clean_db, "SELECT status FROM collect_runs")
    assert runs == [("finished",)]
    assert seconds < 120, seconds
    assert grown_mb < 512, grown_mb  # the driver never held a bomb's expansion
    assert decoy.hits == 0
    figure(
        "hostile",
        group="bombs",
        inputs=len(BOMBS),
        refused=sum(1 for (_, path) in BOMBS if site.url(path) in quarantined),
        stored_intact=len(docs),
        server_errors=0,
        fetched_private=decoy.hits,
        seconds=round(seconds, 1),
        driver_rss_growth_mb=round(grown_mb, 1),
    )
