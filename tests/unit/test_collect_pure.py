"""Pure pieces of the collector: source specs, feed and sitemap parsing, extraction, fingerprints, plans."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from jobs.collect.dedup import MIN_WORDS, fingerprint, similarity
from jobs.collect.discover import ListingError, discover_feeds, parse_feed, parse_sitemap
from jobs.collect.errors import SourceSpecError
from jobs.collect.extract import extract_page
from jobs.collect.plan import LOCAL_HOST, discovered_urls, partition, roots
from jobs.collect.process import process_record
from jobs.collect.sources import make_source_spec
from jobs.urls import canonical_url, host_key, same_site
from storage.frontier import FrontierRow
from storage.sources import SourceRow
from tests.conftest import SHARED_DATA

FEEDS = SHARED_DATA / "feeds"
NEWS = SHARED_DATA / "news_html" / "html"


def source_row(**overrides: object) -> SourceRow:
    from datetime import UTC, datetime

    values: dict[str, object] = {
        "id": 1,
        "name": "s",
        "kind": "feed",
        "uri": "http://example.com/feed.xml",
        "enabled": True,
        "language": None,
        "category": None,
        "interval_s": 3600,
        "max_items": None,
        "url_patterns": (),
        "last_collected_at": None,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    values.update(overrides)
    return SourceRow(**values)  # type: ignore[arg-type]


# ----------------------------------------------------------------- sources


def test_source_spec_canonicalises_and_validates(tmp_path: Path) -> None:
    spec = make_source_spec(name="tc", kind="feed", uri="HTTP://Example.COM:80/feed?utm_source=x#top")
    assert spec.uri == "http://example.com/feed"
    folder = tmp_path / "dump"
    folder.mkdir()
    assert make_source_spec(name="dump", kind="files", uri=str(folder)).uri == str(folder.resolve())
    bad = [
        {"name": "bad name!", "kind": "feed", "uri": "http://x.com/"},
        {"name": "a", "kind": "ftp", "uri": "http://x.com/"},
        {"name": "a", "kind": "feed", "uri": "file:///etc/passwd"},
        {"name": "a", "kind": "files", "uri": str(tmp_path / "missing")},
        {"name": "a", "kind": "feed", "uri": "http://x.com/", "interval_s": 5},
        {"name": "a", "kind": "feed", "uri": "http://x.com/", "url_patterns": ["("]},
        {"name": "a", "kind": "feed", "uri": "http://x.com/", "language": "English"},
    ]
    for case in bad:
        with pytest.raises(SourceSpecError):
            make_source_spec(**case)  # type: ignore[arg-type]


def test_url_helpers() -> None:
    assert host_key("https://Example.com/a") == "https://example.com:443"
    assert host_key("http://127.0.0.2:8080/x") == "http://127.0.0.2:8080"
    assert same_site("http://www.reuters.com/a", "http://uk.reuters.com/b")
    assert not same_site("http://evil.com/a", "http://reuters.com/b")
    assert canonical_url("http://x.com/a?b=2&a=1&utm_medium=feed#frag") == "http://x.com/a?a=1&b=2"


# ----------------------------------------------------------------- feeds and sitemaps


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("feedjira/TechCrunch.xml", 20),
        ("feedjira/RSSWithComments.xml", 30),
        ("feedjira/pet_atom.xml", 10),
        ("feedjira/json_feed.json", 20),
        ("trafilatura/feed.json", 25),
        ("trafilatura/feed1.atom", 1),
        ("trafilatura/feed2.rss", 1),
    ],
)
def test_real_feeds_yield_their_items(name: str, count: int) -> None:
    listing = parse_feed((FEEDS / name).read_bytes(), base_url="http://feeds.example/")
    assert len(listing.items) == count
    assert listing.problem is None
    first = listing.items[0]
    assert first.url.startswith("http")
    assert first.kind == "page"
    assert first.hint.get("title")


def test_feed_summaries_are_plain_text_and_dates_iso() -> None:
    listing = parse_feed((FEEDS / "feedjira/HuffPostCanada.xml").read_bytes(), base_url="http://h/")
    summary = listing.items[0].hint["summary"]
    assert "<" not in summary and "Nusaybah" in summary
    assert listing.items[0].hint["published_at"].startswith("2017-10-17")


def test_broken_feeds() -> None:
    partial = parse_feed((FEEDS / "feedjira/InvalidDateFormat.xml").read_bytes(), base_url="http://h/")
    assert partial.problem is not None and len(partial.items) == 2
    for body in (b"<rss><channel><title>x</ti", b"not a feed at all", b'{"items": []}', b"{broken json"):
        with pytest.raises(ListingError) as err:
            parse_feed(body, base_url="http://h/")
        assert err.value.code == "malformed_feed"


def test_sitemaps_index_urlset_news_gzip_and_text() -> None:
    index = b"""<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
      <sitemap><loc>http://s.example/a.xml</loc></sitemap><sitemap><loc>/b.xml</loc></sitemap></sitemapindex>"""
    listing = parse_sitemap(index, base_url="http://s.example/sitemap.xml")
    assert [(i.url, i.kind) for i in listing.items] == [
        ("http://s.example/a.xml", "sitemap"),
        ("http://s.example/b.xml", "sitemap"),
    ]
    news = b"""<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">
      <url><loc>http://s.example/story</loc><news:news><news:publication_date>2014-12-30</news:publication_date>
      <news:title>Plane found</news:title></news:news></url><url><loc>http://s.example/story</loc></url></urlset>"""
    items = parse_sitemap(gzip.compress(news), base_url="http://s.example/").items
    assert len(items) == 1
    assert items[0].hint == {"title": "Plane found", "published_at": "2014-12-30T00:00:00+00:00"}
    text = parse_sitemap(b"http://s.example/1\nhttp://s.example/2\n", base_url="http://s.example/")
    assert [i.url for i in text.items] == ["http://s.example/1", "http://s.example/2"]
    with pytest.raises(ListingError):
        parse_sitemap(b"<rss></rss>", base_url="http://s.example/")
    entity_bomb = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>
      <urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>http://s.example/&b;</loc></url></urlset>"""
    bomb = parse_sitemap(entity_bomb, base_url="http://s.example/")
    assert all("aaaa" not in i.url for i in bomb.items)


def test_a_sitemap_declaring_entities_is_flagged_and_nothing_is_expanded() -> None:
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<urlset><url><loc>&xxe;</loc></url><url><loc>http://s.example/a</loc></url></urlset>"
    )
    listing = parse_sitemap(xxe, base_url="http://s.example/")
    assert [i.url for i in listing.items] == ["http://s.example/a"]
    assert listing.problem is not None and "declares entities in a DTD (xxe)" in listing.problem
    plain = b"<urlset><url><loc>http://s.example/a</loc></url></urlset>"
    assert parse_sitemap(plain, base_url="http://s.example/").problem is None


def test_site_feed_discovery_falls_back_to_sitemap() -> None:
    html = '<html><head><link rel="alternate" type="application/rss+xml" href="/rss.xml"></head></html>'
    assert [d.url for d in discover_feeds(html, base_url="http://s.example/")] == ["http://s.example/rss.xml"]
    none = discover_feeds("<html><body>hello</body></html>", base_url="http://s.example/")
    assert [(d.url, d.kind) for d in none] == [("http://s.example/sitemap.xml", "sitemap")]


# ----------------------------------------------------------------- extraction


def test_extract_real_pages_with_metadata_and_language() -> None:
    page = extract_page((NEWS / "cnn_article.html").read_bytes(), url="http://www.cnn.com/2013/11/27/x")
    assert page is not None
    assert page.title.startswith("After storm, forecasters")
    assert page.published_at is not None and page.published_at.year == 2013
    assert page.language == "en"
    assert "Thanksgiving" in page.text
    assert page.canonical_url == "http://www.cnn.com/2013/11/27/travel/weather-thanksgiving/index.html"
    arabic = extract_page((NEWS / "arabic_article.html").read_bytes(), url="http://arabic.cnn.com/x")
    assert arabic is not None and arabic.language == "ar"
    spanish = extract_page((NEWS / "spanish_article.html").read_bytes(), url="http://x.es/a")
    assert spanish is not None and spanish.language == "es"


def test_canonical_link_to_another_site_is_ignored() -> None:
    page = extract_page((NEWS / "cnn_article.html").read_bytes(), url="http://mirror.example/copy")
    assert page is not None
    assert page.canonical_url == "http://mirror.example/copy"


def test_empty_and_broken_html_give_no_document() -> None:
    assert extract_page(b"<html><body><div></div></body></html>", url="http://x.com/") is None
    assert extract_page(b"\x00\xff<html><body><p>unclosed <b>", url="http://x.com/") is None
    broken = b"<html><body><p>Unclosed paragraph about the storm that hit the coast <b>on Monday <div></p>"
    page = extract_page(broken * 3, url="http://x.com/")
    assert page is not None and "storm" in page.text  # broken markup is parsed leniently


# ----------------------------------------------------------------- near-duplicates


def test_fingerprints_find_wire_copies_not_related_stories() -> None:
    a = extract_page((NEWS / "reuters.com2.html").read_bytes(), url="http://uk.reuters.com/a")
    b = extract_page((NEWS / "reuters.com3.html").read_bytes(), url="http://uk.reuters.com/b")
    assert a is not None and b is not None
    fa, fb = fingerprint(a.text), fingerprint(b.text)
    assert fa is not None and fb is not None
    copy = fingerprint("Reporting by our wire partner. " + a.text + " All rights reserved. Share this.")
    assert copy is not None
    assert similarity(fa.signature, copy.signature) > 0.9
    assert set(fa.buckets) & set(copy.buckets)
    assert similarity(fa.signature, fb.signature) < 0.5  # same event, different story
    assert fingerprint("too few words " * ((MIN_WORDS - 1) // 3)) is None


# ----------------------------------------------------------------- planning


def frontier_row(url: str, kind: str = "page", host: str | None = None) -> FrontierRow:
    return FrontierRow(url, 1, kind, host or host_key(url), 1, {}, None, None)


def test_partition_keeps_each_host_in_one_partition_and_balances() -> None:
    rows = [frontier_row(f"http://h{h}.example/{i}") for h in range(7) for i in range(h + 1)]
    rows += [frontier_row(f"file:///tmp/{i}.html", "file", LOCAL_HOST) for i in range(4)]
    parts = partition(rows, partitions=3)
    assert len(parts) == 3
    owner: dict[str, int] = {}
    for i, part in enumerate(parts):
        for row in part:
            if row["host"] != LOCAL_HOST:
                assert owner.setdefault(row["host"], i) == i
    assert sum(len(p) for p in parts) == len(rows)
    loads = sorted(len(p) for p in parts)
    assert loads[-1] - loads[0] <= 7
    assert partition(rows, partitions=3) == parts  # deterministic
    assert len(partition(rows[:1], partitions=8)) == 1


def test_discovered_urls_respect_patterns_cap_and_depth(tmp_path: Path) -> None:
    items = [
        {"url": f"http://s.example/news/{i}?utm_source=rss", "kind": "page", "hint": {}} for i in range(5)
    ]
    items += [{"url": "http://s.example/about", "kind": "page", "hint": {}}]
    src = source_row(url_patterns=("/news/",), max_items=3)
    urls, filtered = discovered_urls(items, source=src, depth=0, max_depth=3)
    assert [u.url for u in urls] == [f"http://s.example/news/{i}" for i in range(3)]
    assert filtered == 3 and all(u.depth == 1 for u in urls)
    assert discovered_urls(items, source=src, depth=3, max_depth=3)[0] == []
    (tmp_path / "a.html").write_text("<html></html>")
    (tmp_path / "b.txt").write_text("x")
    files = roots(
        [source_row(kind="files", uri=str(tmp_path)), source_row(id=2, kind="site", uri="http://s.example/")]
    )
    assert [(r.kind, r.url.rsplit("/", 1)[-1]) for r in files] == [("file", "a.html"), ("site", "")]


def test_process_record_failures_and_304() -> None:
    sources = {1: source_row()}
    base = {
        "url": "http://s.example/a",
        "source_id": 1,
        "kind": "page",
        "depth": 1,
        "body": b"",
        "text": None,
    }
    failed = process_record({**base, "error": "http_error", "status": 503}, sources=sources)
    assert failed["outcome"] == "failed" and failed["error"] == "server_error" and failed["retry_after_s"] > 0
    permanent = process_record({**base, "error": "blocked_address"}, sources=sources)
    assert permanent["retry_after_s"] is None
    assert process_record({**base, "status": 304}, sources=sources)["outcome"] == "unchanged"
    empty = process_record({**base, "status": 200, "body": b"<html></html>"}, sources=sources)
    assert empty["error"] == "no_content"
    feed = process_record({**base, "kind": "feed", "status": 200, "body": b"garbage"}, sources=sources)
    assert feed["error"] == "malformed_feed"
