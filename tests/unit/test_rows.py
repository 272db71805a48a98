"""storage.rows.row_to: a dataclass from a row's attributes of the same names, the rest given."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from storage.rows import row_to


@dataclass(frozen=True)
class Out:
    id: int
    name: str
    tags: tuple[str, ...]
    derived: int = field(default=0, init=False)


def test_carries_same_named_attributes_and_takes_given_values() -> None:
    row = SimpleNamespace(id=7, name="a", tags=["x", "y"], unrelated=1)
    assert row_to(Out, row, tags=("x", "y")) == Out(7, "a", ("x", "y"))


def test_a_field_the_row_lacks_and_nobody_gives_is_an_error() -> None:
    with pytest.raises(AttributeError, match="tags"):
        row_to(Out, SimpleNamespace(id=1, name="b"))
