from __future__ import annotations

from storage.database import mask_url, normalize_url
from storage.documents import DocumentRecord, UpsertCounts, content_hash, normalize_text


def test_content_hash_ignores_whitespace_but_not_content() -> None:
    assert content_hash("A  title", "some\n text ") == content_hash("A title", "some text")
    assert content_hash("A title", "some text") != content_hash("A title", "other text")
    assert content_hash("ab", "c") != content_hash("a", "bc")  # the separator keeps fields apart


def test_normalize_text_is_nfc() -> None:
    assert normalize_text("e\u0301") == "\u00e9"


def test_record_hash_matches_function() -> None:
    record = DocumentRecord(canonical_url="https://e.com/", title="T", text="x")
    assert record.content_hash == content_hash("T", "x")


def test_counts_add() -> None:
    assert UpsertCounts(1, 2, 3, 4) + UpsertCounts(1, 1, 1, 1) == UpsertCounts(2, 3, 4, 5)


def test_mask_url_hides_password() -> None:
    masked = mask_url("postgresql://user:s3cret@db.example.com:5432/pulse")
    assert "s3cret" not in masked
    assert "user:***@db.example.com" in masked


def test_normalize_url_uses_psycopg3() -> None:
    assert normalize_url("postgresql://u@h/d").startswith("postgresql+psycopg://")
    assert normalize_url("postgres://u@h/d").startswith("postgresql+psycopg://")
