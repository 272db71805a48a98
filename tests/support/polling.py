"""Waiting for a condition in end-to-end tests."""

from __future__ import annotations

import time
from typing import Any


def wait_for(
    predicate: Any, timeout_s: float = 90, what: str = "timed out waiting", every_s: float = 0.3
) -> Any:
    """The first truthy ``predicate()``, polled every ``every_s``; AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"{what} (waited {timeout_s:.0f} s)")
