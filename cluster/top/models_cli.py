"""`pulse models list|add|activate`: the embedding model registry.

An entry is a model (a name or a local folder; nothing is downloaded) with a text recipe, for an index.
``add`` registers it (``building``); ``activate`` re-embeds every document for it in the background
and then switches search to it atomically, or switches at once if its vectors are already complete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import click
from sqlalchemy.orm import Session, sessionmaker

from cluster.ground.settings import Settings
from cluster.top.activation import activate_entry, launch_activation
from cluster.top.commands.env import CommandEnv, pass_env
from cluster.top.entry import InOrderGroup
from cluster.top.job_configs import default_recipe, embed_config
from cluster.top.targets import RayChoice
from jobs.embed.recipe import RECIPE_FIELDS, TextRecipe
from jobs.embed.registry import entry_spec
from jobs.errors import JobError
from storage.database import make_engine, make_session_factory, session_scope
from storage.embeddings import EmbeddingRepository, EmbedRunRepository
from storage.model_registry import ACTIVE, ModelRegistry, ModelRow

F = TypeVar("F", bound=Callable[..., Any])


class ModelRefError(JobError):
    """A model reference that matches no entry, or several."""


@dataclass(frozen=True)
class EntryRef:
    """An entry as `add` / `activate` name it: an entry id, or a model name / local folder with the recipe
    options given on the command line (``recipe``), for ``index`` (None: PULSE_EMBED__INDEX_NAME)."""

    model: str
    index: str | None
    recipe: dict[str, Any]

    @classmethod
    def from_options(cls, model: str, index: str | None, options: dict[str, Any]) -> EntryRef:
        """From the values of ``entry_options`` (None: not given)."""
        given = {name: value for name, value in options.items() if value is not None}
        if "fields" in given:
            given["fields"] = [f.strip() for f in given["fields"].split(",") if f.strip()]
        return cls(model, index, given)


def entry_options(command: F) -> F:
    """The argument and options naming an entry (`add`, `activate`): ``model``, ``index`` and the recipe
    options, which ``EntryRef.from_options`` takes."""
    for option in reversed(
        (
            click.argument("model"),
            click.option("--index", help="index the entry serves (default: PULSE_EMBED__INDEX_NAME)"),
            click.option(
                "--chunk-tokens", type=int, help="content tokens per chunk (default: the model's limit)"
            ),
            click.option("--overlap", type=int, help="tokens shared by consecutive chunks"),
            click.option("--max-chunks", type=int, help="chunks per document at most"),
            click.option(
                "--fields",
                help=f"comma-separated fields to embed, of {','.join(RECIPE_FIELDS)} (default: both)",
            ),
            click.option("--document-prefix", help='text put before every chunk, e.g. "passage: "'),
            click.option("--query-prefix", help='text put before every query, e.g. "query: "'),
        )
    ):
        command = option(command)
    return command


def _describe_recipe(data: dict[str, Any]) -> str:
    recipe = TextRecipe.from_json(data)
    text = f"{'+'.join(recipe.fields)}, {recipe.chunk_tokens or 'max'} tok/chunk"
    text += f", overlap {recipe.overlap}, <= {recipe.max_chunks} chunks"
    if recipe.query_prefix or recipe.document_prefix:
        text += f", prefixes {recipe.query_prefix!r}/{recipe.document_prefix!r}"
    return text


def resolve(session: Any, ref: EntryRef, settings: Settings) -> ModelRow:
    """An entry from an id, or from a model name/folder plus recipe (registered if new)."""
    registry = ModelRegistry(session)
    if ref.model.isdigit():
        if ref.recipe:
            raise ModelRefError("an entry id already has its recipe; pass a model name to use another recipe")
        return registry.get(int(ref.model))
    index = ref.index or settings.embed.index_name
    if not ref.recipe:
        # A bare name picks its existing entry on this index when there is exactly one.
        known = [m for m in registry.find(ref.model) if m.index_name == index]
        if len(known) == 1:
            return known[0]
        if len(known) > 1:
            ids = ", ".join(str(m.id) for m in known)
            raise ModelRefError(
                f"{ref.model!r} has several entries on index {index!r} (ids {ids}); pass the id"
            )
    _, spec = entry_spec(ref.model, recipe={**default_recipe(settings), **ref.recipe}, index_name=index)
    return registry.register(spec)


@contextmanager
def _sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on the command's database, its one connection closed at the end."""
    engine = make_engine(database_url, pool_size=1)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


@click.group("models", cls=InOrderGroup, short_help="embedding model registry: list, add, activate")
def models() -> None:
    """The embedding model registry: list, add, activate.

    An entry is a model (a name or a local folder; nothing is downloaded) with a text recipe, for an
    index. `add` registers it (building); `activate` embeds every document for it in the background and
    then switches search to it atomically, or switches at once if its vectors are already complete.
    """


@models.command("list", short_help="every entry with its status, recipe and progress")
@pass_env
def list_entries(env: CommandEnv) -> int:
    """Every entry with its status, recipe and progress: one block per entry (lines, not a table, so
    nothing is cut on a narrow terminal)."""
    db = env.database()
    console = env.console
    with _sessions(db.url) as sessions, session_scope(sessions) as session:
        embeddings = EmbeddingRepository(session)
        runs = EmbedRunRepository(session)
        entries = ModelRegistry(session).all()
        if not entries:
            console.print("no models yet: `pulse embed` registers the default, `pulse models add` others")
        for m in entries:
            last = runs.last(m.id)
            status = f"[bold]{m.status}[/]" if m.status == ACTIVE else m.status
            console.print(
                f"{m.id}  {m.name}  {status}  index {m.index_name}  dim {m.dimension}  "
                f"embedded {embeddings.count_embedded(model_id=m.id)}  "
                f"pending {embeddings.count_pending(model_id=m.id)}"
            )
            console.print(
                f"    revision {m.revision}; recipe: {_describe_recipe(m.recipe)}; last run: "
                + (f"{last.status} {last.started_at:%Y-%m-%d %H:%M}" if last else "never")
            )
    return 0


@models.command("add", short_help="register a model (a name or a local folder) with a text recipe")
@entry_options
@pass_env
def add(env: CommandEnv, /, *, model: str, index: str | None, **recipe: Any) -> int:
    """Register MODEL (a model name or a local folder) with a text recipe; MODEL may also be an entry id."""
    db = env.database()
    with _sessions(db.url) as sessions, session_scope(sessions) as session:
        entry = resolve(session, EntryRef.from_options(model, index, recipe), env.settings)
    env.console.print(
        f"registered entry {entry.id}: {entry.name} ({entry.revision}, dim {entry.dimension}) "
        f"on index {entry.index_name!r}, {_describe_recipe(entry.recipe)}; status {entry.status}. "
        f"`pulse models activate {entry.id}` embeds every document for it and then switches search."
    )
    return 0


@models.command("activate", short_help="re-embed for an entry in the background, then switch search to it")
@entry_options
@click.option("--wait", is_flag=True, help="wait for the switch, showing progress")
@pass_env
def activate(env: CommandEnv, /, *, model: str, index: str | None, wait: bool, **recipe: Any) -> int:
    """Re-embed every document for MODEL (an entry id, or a model name / local folder, registered if new)
    in the background, then switch search to it."""
    db, ray_target = env.database_and_ray()
    with _sessions(db.url) as sessions:
        with session_scope(sessions) as session:
            entry = resolve(session, EntryRef.from_options(model, index, recipe), env.settings)
        return _activate(env, db.url, ray_target, entry, sessions, wait=wait)


def _activate(
    env: CommandEnv,
    database_url: str,
    ray_target: RayChoice,
    entry: ModelRow,
    sessions: sessionmaker[Session],
    *,
    wait: bool,
) -> int:
    settings, console = env.settings, env.console
    if entry.status == ACTIVE:
        console.print(f"entry {entry.id} ({entry.name}) is already active on index {entry.index_name!r}")
        return 0
    with session_scope(sessions) as session:
        registry = ModelRegistry(session)
        current = registry.active(entry.index_name)
        pending = EmbeddingRepository(session).count_pending(model_id=entry.id)
        registry.request_activation(entry.id)  # recorded first: `pulse up` resumes it after a restart
    serving = f"entry {current.id} ({current.name})" if current else "nothing"
    cfg = replace(embed_config(settings, database_url), model_id=entry.id, progress=True)
    ray_target.join(settings)
    if ray_target.address is None or wait:
        # No running cluster to hand the work to (or asked to wait): do it here, with progress.
        console.print(
            f"activating entry {entry.id} ({entry.name}): embedding {pending} documents here; "
            f"search keeps serving {serving} until they are done"
        )
        result = activate_entry(cfg, namespace=settings.ray.namespace)
        console.print(result.line())
        return 0
    launch_activation(replace(cfg, progress=False), settings.ray.namespace)
    console.print(
        f"activating entry {entry.id} ({entry.name}) in the background: {pending} documents to embed; "
        f"search keeps serving {serving} until they are done, then switches. "
        "`pulse models list` shows the progress."
    )
    return 0
