"""`pulse models list|add|activate`: the embedding model registry.

An entry is a model (a name or a local folder; nothing is downloaded) with a text recipe, for an index.
``add`` registers it (``building``); ``activate`` re-embeds every document for it in the background
and then switches search to it atomically, or switches at once if its vectors are already complete.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from rich.console import Console

from cluster.ground.settings import Settings
from cluster.top.activation import activate_entry, launch_activation
from cluster.top.job_configs import default_recipe, embed_config
from cluster.top.targets import RayChoice
from jobs.embed.recipe import RECIPE_FIELDS, TextRecipe
from jobs.embed.registry import entry_spec
from jobs.errors import JobError
from storage.database import make_engine, make_session_factory, session_scope
from storage.embeddings import EmbeddingRepository, EmbedRunRepository
from storage.model_registry import ACTIVE, ModelRegistry, ModelRow


class ModelRefError(JobError):
    """A model reference that matches no entry, or several."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("models", help="embedding model registry: list, add, activate")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    msub.add_parser("list", help="every entry with its status, recipe and progress")
    for action, helptext in (
        ("add", "register a model (a name or a local folder) with a text recipe"),
        ("activate", "re-embed for an entry in the background, then switch search to it"),
    ):
        a = msub.add_parser(action, help=helptext)
        a.add_argument("model", help="entry id, or a model name / local folder")
        a.add_argument("--index", help="index the entry serves (default: PULSE_EMBED__INDEX_NAME)")
        a.add_argument(
            "--chunk-tokens", type=int, help="content tokens per chunk (default: the model's limit)"
        )
        a.add_argument("--overlap", type=int, help="tokens shared by consecutive chunks")
        a.add_argument("--max-chunks", type=int, help="chunks per document at most")
        a.add_argument(
            "--fields", help=f"comma-separated fields to embed, of {','.join(RECIPE_FIELDS)} (default: both)"
        )
        a.add_argument("--document-prefix", help='text put before every chunk, e.g. "passage: "')
        a.add_argument("--query-prefix", help='text put before every query, e.g. "query: "')
        if action == "activate":
            a.add_argument("--wait", action="store_true", help="wait for the switch, showing progress")


#: Recipe options of `add` / `activate` (argparse dest = recipe key).
RECIPE_OPTIONS = ("chunk_tokens", "overlap", "max_chunks", "fields", "document_prefix", "query_prefix")


def _recipe_options(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe options given on the command line."""
    given = {name: getattr(args, name) for name in RECIPE_OPTIONS if getattr(args, name) is not None}
    if "fields" in given:
        given["fields"] = [f.strip() for f in given["fields"].split(",") if f.strip()]
    return given


def _describe_recipe(data: dict[str, Any]) -> str:
    recipe = TextRecipe.from_json(data)
    text = f"{'+'.join(recipe.fields)}, {recipe.chunk_tokens or 'max'} tok/chunk"
    text += f", overlap {recipe.overlap}, <= {recipe.max_chunks} chunks"
    if recipe.query_prefix or recipe.document_prefix:
        text += f", prefixes {recipe.query_prefix!r}/{recipe.document_prefix!r}"
    return text


def resolve(session: Any, args: argparse.Namespace, settings: Settings) -> ModelRow:
    """An entry from an id, or from a model name/folder plus recipe (registered if new)."""
    registry = ModelRegistry(session)
    if args.model.isdigit():
        if _recipe_options(args):
            raise ModelRefError("an entry id already has its recipe; pass a model name to use another recipe")
        return registry.get(int(args.model))
    index = args.index or settings.embed.index_name
    options = _recipe_options(args)
    if not options:
        # A bare name picks its existing entry on this index when there is exactly one.
        known = [m for m in registry.find(args.model) if m.index_name == index]
        if len(known) == 1:
            return known[0]
        if len(known) > 1:
            ids = ", ".join(str(m.id) for m in known)
            raise ModelRefError(
                f"{args.model!r} has several entries on index {index!r} (ids {ids}); pass the id"
            )
    _, spec = entry_spec(args.model, recipe={**default_recipe(settings), **options}, index_name=index)
    return registry.register(spec)


def run(
    args: argparse.Namespace, settings: Settings, database_url: str, ray_target: RayChoice, console: Console
) -> int:
    engine = make_engine(database_url, pool_size=1)
    sessions = make_session_factory(engine)
    try:
        if args.models_command == "list":
            _list(sessions, console)
            return 0
        with session_scope(sessions) as session:
            entry = resolve(session, args, settings)
        if args.models_command == "add":
            console.print(
                f"registered entry {entry.id}: {entry.name} ({entry.revision}, dim {entry.dimension}) "
                f"on index {entry.index_name!r}, {_describe_recipe(entry.recipe)}; status {entry.status}. "
                f"`pulse models activate {entry.id}` embeds every document for it and then switches search."
            )
            return 0
        return _activate(args, settings, database_url, ray_target, entry, sessions, console)
    finally:
        engine.dispose()


def _list(sessions: Any, console: Console) -> None:
    """One block per entry (lines, not a table, so nothing is cut on a narrow terminal)."""
    with session_scope(sessions) as session:
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


def _activate(
    args: argparse.Namespace,
    settings: Settings,
    database_url: str,
    ray_target: RayChoice,
    entry: ModelRow,
    sessions: Any,
    console: Console,
) -> int:

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
    if ray_target.address is None or args.wait:
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
