"""The import contracts in pyproject.toml keep up with the tree.

A layers contract cannot leave a package's descendants out, so the "only entry points read settings"
contract lists every module of ``jobs`` except the ``python -m`` entry points. This test fails when a
new job module is missing from that list, so a module can never slip out of the contract.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _contracts() -> list[dict[str, object]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts: list[dict[str, object]] = data["tool"]["importlinter"]["contracts"]
    return contracts


def _job_modules() -> set[str]:
    names = set()
    for path in (ROOT / "jobs").rglob("*.py"):
        if path.name == "__main__.py":
            continue
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        names.add(name.removesuffix(".__init__"))
    return names


def test_settings_contract_covers_every_job_module_but_the_entry_points() -> None:
    (contract,) = [c for c in _contracts() if str(c["name"]).startswith("Only entry points read settings")]
    sources = set(contract["source_modules"])  # type: ignore[call-overload]
    missing = _job_modules() - sources
    assert not missing, f"add these to the contract's source_modules in pyproject.toml: {sorted(missing)}"
    assert not {s for s in sources if s.endswith("__main__")}
    assert {"actors.**", "storage.**"} <= sources


def test_every_job_package_entry_point_is_a_protected_importer_of_the_top() -> None:
    (contract,) = [c for c in _contracts() if str(c["name"]).startswith("cluster.top is the top")]
    assert contract["allowed_importers"] == ["cluster.top", "jobs.*.__main__"]
    assert sorted(p.parent.name for p in (ROOT / "jobs").glob("*/__main__.py"))
