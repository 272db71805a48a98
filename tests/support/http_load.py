"""A small steady HTTP load for chaos tests: a few client threads loop over GET requests on 127.0.0.1 and
record every outcome (time, route, status, error code), so a test can count failures in a time window and
find when an application answered again."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

#: ``(route label, URL, query parameters)`` of one request; a callable gives the next one.
Request = tuple[str, str, dict[str, str]]


@dataclass(frozen=True)
class Outcome:
    at: float  # time.monotonic() when the answer (or the error) came
    route: str
    status: int  # 0: no HTTP answer (connection refused, reset, timeout)
    code: str  # the error body's code, the exception's name, or ""


@dataclass
class HttpLoad:
    """``threads`` clients cycling over ``requests`` until ``stop()``; ``outcomes`` in completion order."""

    requests: Sequence[Request]
    threads: int = 3
    timeout_s: float = 10.0
    pause_s: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> HttpLoad:
        for n in range(self.threads):
            worker = threading.Thread(target=self._loop, args=(n,), daemon=True, name=f"http-load-{n}")
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=self.timeout_s + 5)
        return list(self.outcomes)

    def _loop(self, n: int) -> None:
        cycle = itertools.islice(itertools.cycle(self.requests), n, None)
        with httpx.Client(timeout=self.timeout_s) as client:
            for route, url, params in cycle:
                if self._stop.is_set():
                    return
                try:
                    resp = client.get(url, params=params)
                    code = ""
                    if resp.status_code >= 400:
                        try:
                            code = str(resp.json()["error"]["code"])
                        except Exception:
                            code = "<not the error shape>"
                    outcome = Outcome(time.monotonic(), route, resp.status_code, code)
                except httpx.HTTPError as exc:
                    outcome = Outcome(time.monotonic(), route, 0, type(exc).__name__)
                with self._lock:
                    self.outcomes.append(outcome)
                if self.pause_s:
                    time.sleep(self.pause_s)

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def wait_for(self, what: str, check: Callable[[list[Outcome]], bool], timeout_s: float) -> None:
        """Poll the outcomes until ``check`` holds (fails the test after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while not check(self.snapshot()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            time.sleep(0.05)


def failed(outcomes: Sequence[Outcome], *, allowed: frozenset[int] = frozenset()) -> list[Outcome]:
    """Requests that failed: no answer, a 5xx not in ``allowed``, or an error body not in the one shape."""
    return [
        o
        for o in outcomes
        if o.status == 0 or (o.status >= 500 and o.status not in allowed) or o.code == "<not the error shape>"
    ]


def by_route(outcomes: Sequence[Outcome]) -> dict[str, dict[str, int]]:
    """``{route: {status: count}}``, for a figure or a failure message."""
    table: dict[str, dict[str, int]] = {}
    for o in outcomes:
        row = table.setdefault(o.route, {})
        row[str(o.status)] = row.get(str(o.status), 0) + 1
    return table
