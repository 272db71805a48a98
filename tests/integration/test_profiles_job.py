"""The profile rebuild job (cluster.top.profiles_job) on a real local Ray and real PostgreSQL: the book it
rebuilds in groups answers exactly as one built from all events in seq order, the running profile actor
adopts it and applies what came after its watermark; and the actor's retention drops old months."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import ray
from ray.actor import ActorProxy
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from actors.rec_actor import (
    PROFILE_SNAPSHOT,
    ProfileActorConfig,
    ProfileService,
    get_or_create_profile_actor,
    interaction,
)
from actors.rec_profiles import ProfileBook, ProfileParams
from cluster.top.profiles_job import ProfilesRebuildConfig, rebuild_profiles
from storage.index_snapshots import SnapshotStore
from storage.rec_events import EventIn, events_after
from tests.integration.test_rec_store import ev, partitions, rec_db, store  # noqa: F401

pytestmark = pytest.mark.usefixtures("ray_session")

#: Small enough that profiles drop documents, recent positives roll over and the co-read window matters.
PARAMS = ProfileParams(max_documents=6, recent=5, covisit_window_s=3 * 86_400.0, max_seen=40)
TYPES = ["view"] * 5 + ["click"] * 3 + ["like", "share", "dislike", "dwell", "impression"]


def namespace() -> str:
    return f"pulse-test-profiles-{uuid.uuid4().hex[:8]}"


def random_events(n: int, *, subjects: int, documents: int, now: datetime, seed: int = 7) -> list[EventIn]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.choice(TYPES)
        subject = f"user:u{rng.randrange(subjects)}" if i % 4 else f"session:s{rng.randrange(subjects)}"
        at = now - timedelta(seconds=rng.uniform(0, 10 * 86_400))  # not in seq order
        value = rng.uniform(1, 200) if kind == "dwell" else None
        out.append(
            ev(
                f"ev-{seed}-{i}",
                at,
                type=kind,
                document_id=rng.randrange(1, documents + 1),
                subject=subject,
                value=value,
            )
        )
    return out


def reference_book(engine: Engine) -> tuple[ProfileBook, int]:
    """A book built in this process from every stored event in seq order, and the last seq."""
    with Session(engine) as session:
        rows = events_after(session, 0, 1_000_000)
    book = ProfileBook(PARAMS)
    book.add(interaction(r) for r in rows)
    return book, rows[-1].seq


@pytest.fixture
def profile_actor(
    database_url: str,
    rec_db: str,  # noqa: F811 (emptied before the actor starts)
    tmp_path: Path,
) -> Iterator[tuple[ActorProxy[ProfileService], str]]:
    """A profile actor in a namespace of its own that only catches up when told (no polling, no snapshots
    of its own); killed at the end."""
    ns = namespace()
    config = ProfileActorConfig(
        database_url=database_url,
        storage_uri=str(tmp_path),
        namespace=ns,
        params=PARAMS,
        num_cpus=0,
        poll_interval_s=3600.0,
        snapshot_interval_s=0,
    )
    actor = get_or_create_profile_actor(config)
    assert ray.get(actor.wait_ready.remote(60))
    try:
        yield actor, ns
    finally:
        ray.kill(actor, no_restart=True)


def test_the_rebuilt_book_equals_one_built_in_seq_order_and_the_actor_adopts_it(
    engine: Engine,
    rec_db: str,  # noqa: F811
    tmp_path: Path,
    profile_actor: tuple[ActorProxy[ProfileService], str],
) -> None:
    actor, ns = profile_actor
    now = datetime.now(UTC).replace(microsecond=0)
    events = random_events(1500, subjects=30, documents=25, now=now)
    for start in range(0, len(events), 500):
        store(rec_db, events[start : start + 500])
    reference, last_seq = reference_book(engine)
    assert len(reference) >= 55  # ~30 users and ~30 sessions

    result = rebuild_profiles(
        ProfilesRebuildConfig(
            database_url=rec_db,
            storage_uri=str(tmp_path),
            namespace=ns,
            params=PARAMS,
            groups=3,
            num_cpus=0.5,
            page_size=100,  # several pages per group
        )
    )
    assert (result.watermark, result.events, result.subjects, result.groups) == (
        last_seq,
        len(events),
        len(reference),
        3,
    )
    loaded = SnapshotStore(str(tmp_path)).load(PROFILE_SNAPSHOT)
    assert loaded is not None
    arrays, info = loaded
    assert info["watermark"] == last_seq
    rebuilt = ProfileBook.from_arrays(PARAMS, arrays)

    subjects = sorted({e.subject for e in events})
    assert len(rebuilt) == len(subjects) and rebuilt.applied == reference.applied == len(events)
    for subject in subjects:
        assert rebuilt.user(subject) == reference.user(subject), subject
    for docs in ([1], [2, 3], [5, 8, 13], list(range(1, 26))):
        assert rebuilt.co_read(docs, limit=10) == reference.co_read(docs, limit=10), docs
    assert any(reference.co_read([d], limit=5) for d in range(1, 26))  # co-reads exist to compare
    at = now.timestamp()
    want, got = reference.popular(now=at, limit=10), rebuilt.popular(now=at, limit=10)
    assert [d for d, _ in got] == [d for d, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-9)
    all_docs = list(range(1, 26))
    assert rebuilt.popularity(all_docs, now=at) == pytest.approx(
        reference.popularity(all_docs, now=at), rel=1e-9
    )

    # The actor running beside the job adopted the snapshot.
    assert result.reloaded and result.actor_watermark == last_seq
    stats = ray.get(actor.stats.remote())
    assert stats.restored_from == last_seq and stats.watermark == last_seq

    # An event stored after the rebuild's watermark: the actor applies it after a reload, on top of the
    # snapshot (its own poll is an hour away).
    subject = subjects[0]
    late = ev("late-1", now, type="like", document_id=99, subject=subject)
    assert store(rec_db, [late]).stored == ["late-1"]
    reloaded_at = ray.get(actor.reload.remote())
    assert reloaded_at > last_seq
    reference, newest = reference_book(engine)
    assert newest == reloaded_at
    inputs = ray.get(actor.inputs.remote(subject, 10, 10, at))
    assert inputs.watermark == reloaded_at
    assert inputs.profile == reference.user(subject)
    assert inputs.profile is not None and 99 in inputs.profile.seen and inputs.profile.positives[0] == 99
    stats = ray.get(actor.stats.remote())
    assert stats.restored_from == last_seq and stats.applied == len(events) + 1


def test_the_rebuild_without_a_running_actor_only_writes_the_snapshot(
    rec_db: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    events = random_events(50, subjects=5, documents=5, now=datetime.now(UTC), seed=3)
    store(rec_db, events)
    result = rebuild_profiles(
        ProfilesRebuildConfig(database_url=rec_db, storage_uri=str(tmp_path), namespace=namespace(), groups=2)
    )
    assert not result.reloaded and result.actor_watermark is None
    assert result.events == 50 and result.subjects == len({e.subject for e in events})
    loaded = SnapshotStore(str(tmp_path)).load(PROFILE_SNAPSHOT)
    assert loaded is not None and loaded[1]["watermark"] == result.watermark
    assert "no pulse-profiles running" in result.line()


def test_the_actor_drops_months_older_than_its_retention(
    engine: Engine,
    rec_db: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=400), now - timedelta(days=1)
    store(rec_db, [ev("old-1", old, subject="user:a"), ev("new-1", recent, subject="user:a", document_id=2)])
    old_partition = f"rec_events_p{old.year:04d}{old.month:02d}"
    assert old_partition in partitions(engine)
    config = ProfileActorConfig(
        database_url=rec_db,
        storage_uri=str(tmp_path),
        namespace=namespace(),
        name="pulse-profiles-retention-test",
        num_cpus=0,
        poll_interval_s=3600.0,
        snapshot_interval_s=0,
        retention_days=30,
    )
    actor = get_or_create_profile_actor(config)
    try:
        deadline = time.monotonic() + 60
        while (stats := ray.get(actor.stats.remote())).retention_runs < 1:  # its first loop runs it
            assert time.monotonic() < deadline, stats
            time.sleep(0.1)
        assert stats.partitions_dropped == 1 and stats.last_error is None
        kept = partitions(engine)
        assert old_partition not in kept and f"rec_events_p{recent.year:04d}{recent.month:02d}" in kept
        with engine.connect() as conn:
            ids = set(conn.execute(text("SELECT event_id FROM rec_event_ids")).scalars())
        assert ids == {"new-1"}
        # The book learnt the old event before it went (catch-up runs before retention).
        profile = ray.get(actor.inputs.remote("user:a", 5, 5, now.timestamp())).profile
        assert profile is not None and profile.events == 2
    finally:
        ray.kill(actor, no_restart=True)


def test_pulse_profiles_rebuild_prints_a_one_line_summary(
    rec_db: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cluster.ground.settings import get_settings
    from tests.integration.helpers import cli_runner

    events = random_events(40, subjects=4, documents=6, now=datetime.now(UTC), seed=5)
    store(rec_db, events)
    monkeypatch.setenv("PULSE_DATABASE__URL", rec_db)
    monkeypatch.setenv("PULSE_STORAGE__URI", str(tmp_path / "storage"))
    monkeypatch.setenv("PULSE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PULSE_RAY__NAMESPACE", namespace())
    get_settings.cache_clear()
    try:
        code, out, err = cli_runner(capsys)("profiles", "rebuild", "--groups", "2", "--num-cpus", "0.25")
    finally:
        get_settings.cache_clear()
    assert code == 0, err
    subjects = len({e.subject for e in events})
    assert out.startswith(f"rebuilt profiles of {subjects} subjects from 40 events in 2 groups in ")
    assert out.count("\n") == 1
    loaded = SnapshotStore(str(tmp_path / "storage")).load(PROFILE_SNAPSHOT)
    assert loaded is not None and len(ProfileBook.from_arrays(ProfileParams(), loaded[0])) == subjects


def test_a_killed_actor_comes_back_from_its_snapshot_and_loses_nothing(
    profile_actor: tuple[ActorProxy[ProfileService], str], engine: Engine, database_url: str
) -> None:
    """Ray restarts the killed actor (max_restarts=-1); it restores its snapshot and catches up from the
    snapshot's watermark: the events before and after the snapshot are each applied once."""
    actor, _ = profile_actor
    now = datetime.now(UTC)
    store(database_url, random_events(200, subjects=12, documents=40, now=now, seed=11))
    assert ray.get(actor.catch_up.remote()) == 200
    watermark = ray.get(actor.snapshot.remote())
    store(database_url, random_events(100, subjects=12, documents=40, now=now, seed=12))  # after the snapshot
    ray.kill(actor, no_restart=False)
    deadline = time.monotonic() + 60
    while True:
        try:
            stats = ray.get(actor.stats.remote(), timeout=10)
            if stats.ready and stats.watermark > watermark:
                break
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            pass
        assert time.monotonic() < deadline, "the profile actor did not come back"
        time.sleep(0.2)
    assert stats.restored_from == watermark
    assert stats.applied == 300  # 200 in the snapshot, 100 caught up: none twice, none lost
    reference, _ = reference_book(engine)
    for subject in (f"user:u{i}" for i in range(12)):
        assert ray.get(actor.inputs.remote(subject, 10, 10, now.timestamp())).profile == reference.user(
            subject
        )
