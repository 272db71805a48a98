from __future__ import annotations

import pytest

#: Modules whose tests run `pulse up` in a subprocess and need a test process that has not joined a Ray yet
#: (the session's Ray starts with the first test that uses it), so they run first.
BEFORE_RAY = ("test_cli_lifecycle.py", "test_console.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.slow)
    first = [item for item in items if item.fspath.basename in BEFORE_RAY]
    if first:
        items[:] = first + [item for item in items if item.fspath.basename not in BEFORE_RAY]
