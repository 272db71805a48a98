from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text

from jobs.ingest.loader import ingest_file


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8"
    )
    return path


def test_ingest_twice_is_idempotent_and_bad_records_are_quarantined(
    clean_db: str,
    engine,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    path = write_jsonl(
        tmp_path / "news.jsonl",
        [
            {
                "id": "1",
                "title": "One",
                "text": "first",
                "url": "https://e.com/1?utm_source=x",
                "published_at": "2018-03-24",
                "metadata": {"category": "POLITICS"},
            },
            {"id": "2", "title": "Two", "text": "second", "url": "https://e.com/2"},
            "{broken",
            {"id": "3", "title": "", "text": "  "},
            {"id": "4", "title": "Four", "text": "x", "published_at": "not a date"},
        ],
    )
    first = ingest_file(path, database_url=clean_db, batch_size=1)
    assert (first.counts.inserted, first.rejected) == (2, 3)
    second = ingest_file(path, database_url=clean_db)
    assert (second.counts.inserted, second.counts.updated, second.counts.unchanged) == (0, 0, 2)
    with engine.connect() as conn:
        urls = conn.execute(text("SELECT canonical_url FROM documents ORDER BY 1")).scalars().all()
        reasons = conn.execute(text("SELECT source_ref, reason FROM quarantine ORDER BY id")).all()
    assert urls == ["https://e.com/1", "https://e.com/2"]
    assert [r.source_ref for r in reasons[:3]] == ["news.jsonl:3", "news.jsonl:4", "news.jsonl:5"]
    assert "invalid JSON" in reasons[0].reason and "empty document" in reasons[1].reason
    assert "ISO 8601" in reasons[2].reason


def test_records_without_a_language_are_stored_with_the_identified_one(
    clean_db: str,
    engine,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {
                "id": "en",
                "title": "Stormy Daniels",
                "text": "The adult film star sued the president on Tuesday.",
            },
            {"id": "ar", "title": "", "text": "تركيا محاطة بالبحار من ثلاث جهات: بحر إيجه من الغرب."},
            {"id": "fr", "title": "Declared", "text": "This record says it is French.", "language": "FR"},
        ],
    )
    ingest_file(path, database_url=clean_db)
    with engine.connect() as conn:
        rows = dict(
            (r[0], (r[1], r[2]))
            for r in conn.execute(text("SELECT external_id, language, language_confidence FROM documents"))
        )
    assert rows["en"][0] == "en" and rows["en"][1] > 0.5
    assert rows["ar"][0] == "ar" and rows["ar"][1] > 0.5
    assert rows["fr"] == ("fr", None)  # declared: kept (normalised), no confidence
