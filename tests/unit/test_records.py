from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobs.errors import InputFileError
from jobs.ingest.records import Rejected, parse_file, parse_published_at, to_record
from jobs.urls import canonical_url
from storage.documents import DocumentRecord


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTPS://Www.Example.com:443/a/b?utm_source=x&b=2&a=1#frag", "https://www.example.com/a/b?a=1&b=2"),
        ("http://example.com:80/x?fbclid=abc", "http://example.com/x"),
        ("https://example.com", "https://example.com/"),
        ("  https://example.com/p#section ", "https://example.com/p"),
    ],
)
def test_canonical_url_strips_tracking_fragment_and_default_port(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


@pytest.mark.parametrize("bad", ["ftp://example.com/x", "javascript:alert(1)", "example.com/x", ""])
def test_canonical_url_refuses_non_http(bad: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        canonical_url(bad)


def test_published_at_forms() -> None:
    assert parse_published_at("2018-03-24") == datetime(2018, 3, 24, tzinfo=UTC)
    assert parse_published_at("2018-03-24T10:00:00Z") == datetime(2018, 3, 24, 10, tzinfo=UTC)
    assert parse_published_at("2018-03-24T10:00:00") == datetime(2018, 3, 24, 10, tzinfo=UTC)
    assert parse_published_at("") is None
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_published_at("24/03/2018")
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_published_at(20180324)


def test_record_without_url_gets_stable_urn() -> None:
    record = to_record({"id": 7, "title": "T", "text": "body"}, source_name="dump")
    assert record.canonical_url == "urn:pulse:dump:7"
    assert record.external_id == "7"


def test_record_metadata_from_json_string_and_extra_fields() -> None:
    record = to_record(
        {"id": "a", "title": "T", "text": "", "metadata": '{"category": "POLITICS"}', "author": "X"},
        source_name="s",
    )
    assert record.metadata == {"category": "POLITICS", "author": "X"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"id": "1", "title": " ", "text": ""}, "empty document"),
        ({"title": "T", "text": "x"}, "needs a url or an id"),
        ({"id": "1", "title": "T", "metadata": "[1, 2]"}, "JSON object"),
        ({"id": "1", "title": "T", "metadata": "{oops"}, "not valid JSON"),
        ({"id": "1", "title": "T", "url": "ftp://x/y"}, "not an http"),
        ({"id": "1", "title": 3}, "must be strings"),
        ({"id": "1", "title": "T", "published_at": "yesterday"}, "ISO 8601"),
    ],
)
def test_invalid_records_say_why(raw: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        to_record(raw, source_name="s")


def test_parse_jsonl_keeps_good_records_and_rejects_bad_ones_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    lines = [
        json.dumps({"id": "1", "title": "A", "text": "a", "url": "https://e.com/a"}),
        "{not json",
        json.dumps([1, 2]),
        "",
        json.dumps({"id": "2", "title": "", "text": ""}),
        json.dumps({"id": "3", "title": "C", "text": "c"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = list(parse_file(path, source_name="docs"))
    good = [i for i in items if isinstance(i, DocumentRecord)]
    bad = [i for i in items if isinstance(i, Rejected)]
    assert [g.external_id for g in good] == ["1", "3"]
    assert [(b.ref, b.reason.split(":")[0]) for b in bad] == [
        ("docs.jsonl:2", "invalid JSON"),
        ("docs.jsonl:3", "a JSONL line must be a JSON object"),
        ("docs.jsonl:5", "empty document"),
    ]


def test_parse_csv_with_metadata_column(tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    path.write_text(
        'id,title,text,url,published_at,metadata\n1,Hello,World,https://e.com/1,2020-01-02,"{""k"": 1}"\n',
        encoding="utf-8",
    )
    (record,) = list(parse_file(path, source_name="docs"))
    assert isinstance(record, DocumentRecord)
    assert record.metadata == {"k": 1}
    assert record.published_at == datetime(2020, 1, 2, tzinfo=UTC)


def test_unknown_format_and_missing_file_are_file_errors(tmp_path: Path) -> None:
    other = tmp_path / "docs.xml"
    other.write_text("<x/>")
    with pytest.raises(InputFileError, match="unknown format"):
        list(parse_file(other, source_name="s"))
    with pytest.raises(InputFileError, match="cannot read"):
        list(parse_file(tmp_path / "missing.jsonl", source_name="s"))


def test_bundled_sample_parses_completely() -> None:
    sample = Path(__file__).resolve().parents[2] / "jobs" / "ingest" / "sample_data" / "huffpost_2018.jsonl"
    items = list(parse_file(sample, source_name="huffpost_2018"))
    assert len(items) == 4782
    assert all(isinstance(i, DocumentRecord) for i in items)
    assert len({i.canonical_url for i in items if isinstance(i, DocumentRecord)}) == 4782
