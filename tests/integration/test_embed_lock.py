"""The per-model lock of embedding runs on a real PostgreSQL: a run that may wait (`pulse embed --wait`)
gets the lock before any later run that only tries, so back-to-back short runs (the CMS scheduler embedding
items while editors change them, seen by bench/soak.py) cannot starve it; without a wait it is refused at
once, as before. About 2 s.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy.orm import Session

from storage.database import make_engine
from storage.embeddings import EmbedRunRepository

MODEL_ID = 987_654  # advisory locks need no row: an id no other test uses


def test_a_waiting_run_is_served_before_later_tries_and_a_bounded_wait_gives_up(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=3)
    # one connection each, kept across commits (as an embedding run holds its lock's connection)
    connections = [engine.connect() for _ in range(3)]
    holder, waiter, later = (Session(bind=c) for c in connections)
    try:
        assert EmbedRunRepository(holder).try_lock(MODEL_ID)
        holder.commit()
        started = time.monotonic()
        assert not EmbedRunRepository(waiter).lock(MODEL_ID, wait_s=0.3)  # still held: gives up
        assert 0.25 <= time.monotonic() - started < 5
        assert not EmbedRunRepository(waiter).lock(MODEL_ID)  # no wait: refused at once, as before

        got: list[bool] = []
        thread = threading.Thread(
            target=lambda: got.append(EmbedRunRepository(waiter).lock(MODEL_ID, wait_s=30))
        )
        thread.start()
        time.sleep(0.5)  # the waiter is queued now
        EmbedRunRepository(holder).unlock(MODEL_ID)
        holder.commit()
        # a run that only tries, right after the holder let go, finds the waiter ahead of it
        tried = EmbedRunRepository(later).try_lock(MODEL_ID)
        later.commit()
        thread.join(timeout=30)
        assert got == [True] and not tried
        waiter.commit()
        EmbedRunRepository(waiter).unlock(MODEL_ID)
        waiter.commit()
        assert EmbedRunRepository(later).try_lock(MODEL_ID)  # free again
        EmbedRunRepository(later).unlock(MODEL_ID)
        later.commit()
    finally:
        for s in (holder, waiter, later):
            s.close()
        for c in connections:
            c.close()
        engine.dispose()
