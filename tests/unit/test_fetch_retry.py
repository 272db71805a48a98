"""The fetch retry policy (jobs.collect.retry, tenacity) on scripted answers: what is retried, how often,
how long before each retry. No network, no sleeping: the pauses are recorded."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable

import pytest
from tenacity import AsyncRetrying, RetryCallState

from jobs.collect.errors import FetchErrorCode
from jobs.collect.fetch import FetchPolicy
from jobs.collect.fetch_types import Exchange
from jobs.collect.retry import Attempt, RetryPolicy
from jobs.collect.transport import RawResponse


def state(attempt_number: int) -> RetryCallState:
    retry_state = RetryCallState(retry_object=AsyncRetrying(), fn=None, args=(), kwargs={})
    retry_state.attempt_number = attempt_number
    return retry_state


def policy(seed: int = 0, **overrides: float) -> RetryPolicy:
    values: dict[str, float] = {
        "max_retries": 2,
        "backoff_base_s": 0.5,
        "backoff_max_s": 30.0,
        "max_retry_after_s": 60.0,
    }
    values.update(overrides)
    return RetryPolicy(
        max_retries=int(values["max_retries"]),
        backoff_base_s=values["backoff_base_s"],
        backoff_max_s=values["backoff_max_s"],
        max_retry_after_s=values["max_retry_after_s"],
        rng=random.Random(seed),
    )


def run(retry: RetryPolicy, answers: Iterable[Attempt]) -> tuple[Exchange, list[float], int]:
    """Drive ``retry`` over scripted answers: the exchange, the pauses asked for, the answers used."""
    script = iter(answers)
    pauses: list[float] = []
    used = 0

    async def attempt() -> Attempt:
        nonlocal used
        used += 1
        return next(script)

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    exchange = asyncio.run(retry.run(attempt, pause=pause, url="http://news.test/a"))
    return exchange, pauses, used


def status(code: int, retry_after_s: float | None = None) -> Attempt:
    return Attempt(RawResponse(status=code), retry_after_s)


def error(code: FetchErrorCode, *, permanent: bool = False) -> Attempt:
    return Attempt(RawResponse(error=code, detail=f"it went {code}", permanent=permanent))


# --------------------------------------------------------------------------- the wait


def test_backoff_has_full_jitter_under_an_exponential_cap() -> None:
    backoff = policy(seed=7).backoff
    for retry in range(8):
        ceiling = min(30.0, 0.5 * 2**retry)
        draws = [backoff(state(retry + 1)) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8  # the whole range is used, not a fixed delay
        assert min(draws) < ceiling * 0.2


def test_backoff_draws_what_the_hand_written_formula_drew() -> None:
    """Same seed, same delays as the backoff this policy replaced: uniform(0, min(max, base * 2**retry))."""
    backoff = policy(seed=3, backoff_base_s=1.0, backoff_max_s=10.0).backoff
    reference = random.Random(3)
    for retry in range(6):
        assert backoff(state(retry + 1)) == reference.uniform(0.0, min(10.0, 1.0 * 2**retry))


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    answers = [status(503), status(502), status(200)]
    assert run(policy(seed=1), answers)[1] == run(policy(seed=1), answers)[1]
    assert run(policy(seed=1), answers)[1] != run(policy(seed=2), answers)[1]


def test_retry_after_is_the_wait_when_given() -> None:
    exchange, pauses, used = run(policy(), [status(429, retry_after_s=1.0), status(200)])
    assert pauses == [1.0] and used == 2
    assert exchange.status == 200 and exchange.attempts == 2 and exchange.retry_after_s is None


def test_retry_after_above_the_limit_is_not_waited_for() -> None:
    exchange, pauses, used = run(policy(max_retry_after_s=60), [status(429, 3600.0), status(200)])
    assert pauses == [] and used == 1
    assert exchange.status == 429 and exchange.retry_after_s == 3600.0 and exchange.attempts == 1
    assert exchange.error is None  # the result builder names it (jobs.collect.results.settle)


# --------------------------------------------------------------------------- what is retried, how often


@pytest.mark.parametrize("code", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_max_retries_times(code: int) -> None:
    exchange, pauses, used = run(policy(max_retries=2), [status(code)] * 5)
    assert used == 3 and len(pauses) == 2
    assert exchange.status == code and exchange.attempts == 3


@pytest.mark.parametrize("code", [200, 301, 304, 400, 403, 404, 410, 501])
def test_other_statuses_are_final(code: int) -> None:
    exchange, pauses, used = run(policy(), [status(code), status(200)])
    assert used == 1 and pauses == [] and exchange.status == code and exchange.attempts == 1


def test_a_flaky_answer_succeeds_on_a_retry() -> None:
    exchange, pauses, _ = run(policy(max_retries=2), [status(503), status(503), status(200)])
    assert exchange.status == 200 and exchange.attempts == 3 and len(pauses) == 2
    assert all(0.0 <= p <= 30.0 for p in pauses)


@pytest.mark.parametrize("code", [FetchErrorCode.TIMEOUT, FetchErrorCode.CONNECTION_ERROR])
def test_timeouts_and_connection_errors_are_retried(code: FetchErrorCode) -> None:
    exchange, _, used = run(policy(max_retries=1), [error(code)] * 3)
    assert used == 2 and exchange.error == code and exchange.attempts == 2
    assert exchange.detail == f"it went {code}"


@pytest.mark.parametrize(
    "answer",
    [
        error(FetchErrorCode.CONNECTION_ERROR, permanent=True),  # a refused TLS certificate
        error(FetchErrorCode.DNS_ERROR),
        error(FetchErrorCode.BLOCKED_ADDRESS),
        error(FetchErrorCode.TOO_LARGE),
        error(FetchErrorCode.INVALID_URL),
    ],
)
def test_other_errors_are_not_retried(answer: Attempt) -> None:
    exchange, pauses, used = run(policy(max_retries=3), [answer, status(200)])
    assert used == 1 and pauses == [] and exchange.error == answer.response.error


def test_no_retries_means_one_attempt() -> None:
    exchange, pauses, used = run(policy(max_retries=0), [status(503), status(200)])
    assert used == 1 and pauses == [] and exchange.attempts == 1


def test_an_exception_of_the_attempt_is_not_retried() -> None:
    calls = 0

    async def broken() -> Attempt:
        nonlocal calls
        calls += 1
        raise RuntimeError("a bug")

    async def pause(seconds: float) -> None:
        raise AssertionError("no retry after an exception")

    with pytest.raises(RuntimeError, match="a bug"):
        asyncio.run(policy().run(broken, pause=pause))
    assert calls == 1


def test_policy_values_come_from_the_fetch_policy() -> None:
    retry = RetryPolicy.of(
        FetchPolicy(max_retries=4, backoff_base_s=0.25, backoff_max_s=2.0, max_retry_after_s=5.0),
        rng=random.Random(0),
    )
    assert retry.max_retries == 4 and retry.max_retry_after_s == 5.0
    assert retry.backoff.multiplier == 0.25 and retry.backoff.max == 2.0
    exchange, pauses, _ = run(retry, [status(500)] * 9)
    assert exchange.attempts == 5 and len(pauses) == 4 and all(p <= 2.0 for p in pauses)
