"""Idempotent upserts, updates, quarantine and full-text columns on real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from storage.documents import DocumentRecord, DocumentRepository, UpsertCounts, summary_statement

#: SIB-200 dev sentence 348 (FLORES-200, CC BY-SA 4.0): stars give light and heat from the energy of fusion.
ARABIC_SENTENCE = (
    "ينبعث الضوء والحرارة من النجوم بسبب الطاقة الناتجة عن دمج "
    "(أوالتحام) ذرات الهيدروجين معاً لتشكيل عناصر أثقل."
)


def doc(n: int, body: str = "body", **kw: object) -> DocumentRecord:
    return DocumentRecord(
        canonical_url=f"https://example.com/{n}", title=f"Title {n}", text=body, external_id=str(n), **kw
    )


def test_same_input_twice_changes_nothing(session: Session) -> None:
    repo = DocumentRepository(session)
    source = repo.ensure_source(name="t", kind="file")
    docs = [doc(i, published_at=datetime(2018, 3, 1, tzinfo=UTC)) for i in range(20)]
    assert repo.upsert_documents(documents=docs, source_id=source) == UpsertCounts(inserted=20)
    before = session.execute(text("SELECT id, updated_at, xmin::text FROM documents ORDER BY id")).all()
    assert repo.upsert_documents(documents=docs, source_id=source) == UpsertCounts(unchanged=20)
    after = session.execute(text("SELECT id, updated_at, xmin::text FROM documents ORDER BY id")).all()
    assert before == after  # not even rewritten


def test_changed_text_updates_in_place_and_keeps_the_id(session: Session) -> None:
    repo = DocumentRepository(session)
    repo.upsert_documents(documents=[doc(1), doc(2)], source_id=None)
    (old_id,) = session.execute(text("SELECT id FROM documents WHERE external_id = '1'")).one()
    counts = repo.upsert_documents(documents=[doc(1, body="new body"), doc(2)], source_id=None)
    assert counts == UpsertCounts(updated=1, unchanged=1)
    row = session.execute(text("SELECT id, text FROM documents WHERE external_id = '1'")).one()
    assert row == (old_id, "new body")


def test_duplicates_inside_one_batch_keep_the_last(session: Session) -> None:
    repo = DocumentRepository(session)
    counts = repo.upsert_documents(documents=[doc(1, body="first"), doc(1, body="second")], source_id=None)
    assert counts == UpsertCounts(inserted=1, duplicates_in_input=1)
    assert session.execute(text("SELECT text FROM documents")).scalar_one() == "second"


def test_summaries_and_quarantine(session: Session) -> None:
    repo = DocumentRepository(session)
    repo.upsert_documents(documents=[doc(1)], source_id=None)
    (doc_id,) = session.execute(text("SELECT id FROM documents")).one()
    rows = session.execute(summary_statement([doc_id, 999_999])).all()
    assert [(r.id, r.canonical_url) for r in rows] == [(doc_id, "https://example.com/1")]
    repo.quarantine(job="ingest", source_ref="f.jsonl:3", reason="empty document", payload={"id": "x"})
    session.flush()
    reasons = session.execute(text("SELECT reason FROM quarantine WHERE job = 'ingest'")).scalars().all()
    assert reasons == ["empty document"]


def test_english_and_arabic_full_text_columns_stem(session: Session) -> None:
    repo = DocumentRepository(session)
    arabic = ARABIC_SENTENCE
    repo.upsert_documents(
        documents=[
            doc(1, body="Students were marching against gun violence"),
            DocumentRecord(canonical_url="https://example.com/ar", title="", text=arabic, language="ar"),
        ],
        source_id=None,
    )
    english = session.execute(
        text("SELECT count(*) FROM documents WHERE tsv_en @@ plainto_tsquery('english', 'march students')")
    ).scalar_one()
    assert english == 1
    # "طاقة" (energy, without the article) matches "الطاقة" in the body through the Arabic stemmer.
    found = session.execute(
        text("SELECT count(*) FROM documents WHERE tsv_ar @@ plainto_tsquery('arabic', 'طاقة')")
    ).scalar_one()
    assert found == 1
