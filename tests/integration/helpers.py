"""Small shared helpers for integration and e2e tests (real data, real database)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import SAMPLE

#: Words that mark the 2018 student protests against gun violence in the sample corpus.
PROTEST_WORDS = ("march for our lives", "walkout", "walk out", "gun violence", "parkland")


def sample_subset(path: Path, *, n_other: int, must_contain: tuple[str, ...] = PROTEST_WORDS) -> Path:
    """A JSONL file with every sample record mentioning one of ``must_contain`` plus ``n_other`` others."""
    picked: list[str] = []
    others = 0
    for line in SAMPLE.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        blob = f"{record['title']} {record['text']}".lower()
        if any(word in blob for word in must_contain):
            picked.append(line)
        elif others < n_other:
            picked.append(line)
            others += 1
    path.write_text("\n".join(picked) + "\n", encoding="utf-8")
    return path


def cli_runner(capsys: Any) -> Callable[..., tuple[int, str, str]]:
    """Run `pulse ARGS...` in this process; returns (exit code, stdout, stderr without the line every
    command starts with to say which database and Ray it uses: tests/integration/test_database_choice.py
    checks that line)."""
    from cluster.top import cli

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, "".join(line for line in err.splitlines(True) if not line.startswith("using "))

    return run
