"""Figures that reliability and security tests print (issue 20): one JSON line per figure.

A chaos, security or soak test calls the ``figure`` fixture (``tests/conftest.py``) with a name and its
values; the line is printed (so a CI log shows it) and appended to ``$PULSE_RELIABILITY_FIGURES``
(default ``var/reliability/figures.jsonl`` under the checkout). ``python bench/reliability.py`` runs the
full suites with a fresh file and turns it into the README's "Reliability" table.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PATH = ROOT / "var" / "reliability" / "figures.jsonl"


def figures_path() -> Path:
    return Path(os.environ.get("PULSE_RELIABILITY_FIGURES") or DEFAULT_PATH)


def record(test: str, name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Print one figure and append it to the figures file; returns the line's object."""
    line = {"test": test, "figure": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **values}
    text = json.dumps(line, sort_keys=True, default=str)
    print(f"FIGURE {text}")
    path = figures_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(text + "\n")
    return line


def read(path: Path | None = None) -> list[dict[str, Any]]:
    """Every figure in the file, in the order written."""
    source = path or figures_path()
    if not source.exists():
        return []
    return [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
