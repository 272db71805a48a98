"""Running the collect job once or on each source's schedule (``--loop``)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from jobs.collect.pipeline import CollectJobConfig, CollectSummary, run_collect
from storage.database import make_engine, make_session_factory, session_scope
from storage.sources import SourceRepository

logger = logging.getLogger(__name__)


def collect_once(cfg: CollectJobConfig) -> CollectSummary:
    summary = run_collect(cfg)
    sys.stdout.write(summary.line() + "\n")
    return summary


def seconds_until_due(database_url: str) -> float | None:
    engine = make_engine(database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return SourceRepository(session).next_due_in_s()
    finally:
        engine.dispose()


def collect_loop(
    cfg: CollectJobConfig,
    *,
    max_sleep_s: float,
    sleep: Callable[[float], None] = time.sleep,
    iterations: int | None = None,
) -> None:
    """Collect what is due, sleep until the next source is due (at most ``max_sleep_s``, so sources added
    meanwhile are picked up), repeat. ``iterations`` bounds the loop (tests)."""
    done = 0
    while iterations is None or done < iterations:
        summary = run_collect(cfg)
        if summary.sources:
            sys.stdout.write(summary.line() + "\n")
            sys.stdout.flush()
        done += 1
        wait = seconds_until_due(cfg.database_url)
        pause = max_sleep_s if wait is None else min(max_sleep_s, max(1.0, wait))
        logger.info("next collection check in %.0f s", pause)
        if iterations is None or done < iterations:
            sleep(pause)
