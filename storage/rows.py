"""ORM rows into the frozen dataclasses storage hands out, without a field-by-field copy."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def row_to(cls: type[T], row: object, **values: Any) -> T:
    """``cls`` (a dataclass) from ``row``'s attributes of the same names; ``values`` give the fields the
    row does not hold as they are (converted, renamed or joined from elsewhere)."""
    carried = {f.name: getattr(row, f.name) for f in fields(cls) if f.init and f.name not in values}  # type: ignore[arg-type]
    return cls(**carried, **values)
