"""Progress for long jobs: a rich bar on a terminal, a log line every few seconds otherwise."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

logger = logging.getLogger(__name__)


class JobProgress:
    def __init__(self, *, total: int, label: str, enabled: bool = True, log_every_s: float = 5.0) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self._start = time.perf_counter()
        self._last_log = self._start
        self._log_every_s = log_every_s
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if enabled and sys.stderr.isatty():
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                transient=False,
            )
        self._enabled = enabled

    def __enter__(self) -> JobProgress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, rate="")
        return self

    def advance(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        rate = self.done / max(now - self._start, 1e-9)
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=n, rate=f"{rate:,.0f}/s")
        elif self._enabled and (now - self._last_log >= self._log_every_s or self.done >= self.total):
            self._last_log = now
            pct = 100.0 * self.done / self.total if self.total else 100.0
            logger.info("%s: %d/%d (%.0f%%) %.0f/s", self.label, self.done, self.total, pct, rate)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
