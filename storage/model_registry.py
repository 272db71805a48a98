"""The embedding model registry: which models exist, their text recipe, and which one each index serves.

A registry entry is a model (name + revision) with a text recipe for an index. Its status moves
``building -> active -> retired`` (and back to ``active`` when re-activated); a partial unique index
keeps exactly one ``active`` entry per index, and ``switch_active`` flips it in one transaction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.errors import ModelNotRegistered
from storage.models import EmbeddingModel

#: The index a model serves unless told otherwise.
DEFAULT_INDEX = "default"
#: Registry statuses.
BUILDING, ACTIVE, RETIRED = "building", "active", "retired"


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """What registering a model records (read from the model's files and the recipe, not from a load)."""

    name: str
    revision: str
    path: str
    dimension: int
    normalize: bool
    max_seq_length: int | None
    pooling: str
    recipe: dict[str, Any] = field(default_factory=dict)
    recipe_key: str = ""
    index_name: str = DEFAULT_INDEX


@dataclass(frozen=True, kw_only=True)
class ModelRow(ModelSpec):
    """A registry entry: its spec plus identity and status."""

    id: int
    status: str
    created_at: datetime | None = None
    activated_at: datetime | None = None


#: Columns that a spec sets.
SPEC_FIELDS = tuple(f.name for f in fields(ModelSpec))


def _row(m: EmbeddingModel) -> ModelRow:
    return ModelRow(
        id=m.id,
        status=m.status,
        created_at=m.created_at,
        activated_at=m.activated_at,
        **{name: getattr(m, name) for name in SPEC_FIELDS},
    )


def active_statement(index_name: str = DEFAULT_INDEX):  # type: ignore[no-untyped-def]
    """The active entry of an index (at most one), for sync and async callers alike."""
    return select(EmbeddingModel).where(
        EmbeddingModel.index_name == index_name, EmbeddingModel.status == ACTIVE
    )


class ModelRegistry:
    """SQL of the registry, on a caller-owned session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def register(self, spec: ModelSpec, *, activate_if_none: bool = False) -> ModelRow:
        """The entry of ``spec`` (created ``building`` if new); the index's first entry may be activated."""
        # On conflict the row is updated (its loading path), so RETURNING yields it either way.
        model = self.session.execute(
            insert(EmbeddingModel)
            .values(**asdict(spec))
            .on_conflict_do_update(constraint="uq_embedding_models_identity", set_={"path": spec.path})
            .returning(EmbeddingModel),
            execution_options={"populate_existing": True},
        ).scalar_one()
        if activate_if_none and self.active(spec.index_name) is None:
            self.switch_active(model.id)
            self.session.refresh(model)
        return _row(model)

    def get(self, model_id: int) -> ModelRow:
        model = self.session.get(EmbeddingModel, model_id)
        if model is None:
            raise ModelNotRegistered(model_id)
        return _row(model)

    def find(self, ref: str) -> list[ModelRow]:
        """Entries matching an id or a name (a name may have several revisions or recipes)."""
        if ref.isdigit():
            model = self.session.get(EmbeddingModel, int(ref))
            return [_row(model)] if model else []
        stmt = select(EmbeddingModel).where(EmbeddingModel.name == ref).order_by(EmbeddingModel.id)
        return [_row(m) for m in self.session.execute(stmt).scalars()]

    def all(self) -> list[ModelRow]:
        stmt = select(EmbeddingModel).order_by(EmbeddingModel.index_name, EmbeddingModel.id)
        return [_row(m) for m in self.session.execute(stmt).scalars()]

    def active(self, index_name: str = DEFAULT_INDEX) -> ModelRow | None:
        model = self.session.execute(active_statement(index_name)).scalar_one_or_none()
        return _row(model) if model else None

    def request_activation(self, model_id: int) -> None:
        """Record that the entry should become active once built (``building`` unless already active)."""
        self.get(model_id)
        self.session.execute(
            update(EmbeddingModel)
            .where(EmbeddingModel.id == model_id, EmbeddingModel.status != ACTIVE)
            .values(status=BUILDING, activation_requested_at=func.now())
        )

    def requested_activations(self) -> list[ModelRow]:
        """Entries whose activation was asked for and has not switched yet (to resume after a restart)."""
        stmt = (
            select(EmbeddingModel)
            .where(EmbeddingModel.activation_requested_at.is_not(None), EmbeddingModel.status == BUILDING)
            .order_by(EmbeddingModel.id)
        )
        return [_row(m) for m in self.session.execute(stmt).scalars()]

    def switch_active(self, model_id: int) -> ModelRow | None:
        """Make ``model_id`` its index's active entry in this transaction; returns the entry it replaced."""
        target = self.session.execute(
            select(EmbeddingModel).where(EmbeddingModel.id == model_id).with_for_update()
        ).scalar_one_or_none()
        if target is None:
            raise ModelNotRegistered(model_id)
        previous = self.session.execute(
            active_statement(target.index_name).with_for_update()
        ).scalar_one_or_none()
        if previous is not None and previous.id == model_id:
            return None
        replaced = _row(previous) if previous is not None else None
        if previous is not None:
            self.session.execute(
                update(EmbeddingModel)
                .where(EmbeddingModel.id == previous.id)
                .values(status=RETIRED, retired_at=func.now())
            )
            # The partial unique index is checked per statement: retire first, then activate.
            self.session.flush()
        self.session.execute(
            update(EmbeddingModel)
            .where(EmbeddingModel.id == model_id)
            .values(status=ACTIVE, activated_at=func.now(), retired_at=None, activation_requested_at=None)
        )
        return replaced


async def fetch_active_model(session: AsyncSession, index_name: str = DEFAULT_INDEX) -> ModelRow | None:
    """The active entry of an index, for async callers."""
    result = await session.execute(active_statement(index_name))
    model = result.scalar_one_or_none()
    return _row(model) if model else None
