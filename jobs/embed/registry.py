"""From a model name and a text recipe to a registry entry, checked before any work starts.

``entry_spec`` describes the model from its files, validates the recipe against the model's own
tokenizer (chunk size, prefix) and returns what registering it records; ``info_of`` turns a registry
entry back into what workers need to load it. Unknown names and folders without a model raise
``ModelNotFound``, bad recipes ``RecipeError``: both before Ray or the database are touched.
"""

from __future__ import annotations

from typing import Any

from jobs.embed.chunking import token_template
from jobs.embed.encode import ModelInfo, describe_model, load_tokenizer, model_token_limit, resolve_model_path
from jobs.embed.recipe import TextRecipe
from storage.model_registry import DEFAULT_INDEX, ModelRow, ModelSpec
from storage.rows import row_to


def entry_spec(
    model_ref: str, *, recipe: dict[str, Any] | None = None, index_name: str = DEFAULT_INDEX
) -> tuple[ModelInfo, ModelSpec]:
    info = describe_model(model_ref)
    text_recipe = TextRecipe.from_json(recipe or {})
    check_recipe(info, text_recipe)
    spec = row_to(
        ModelSpec,
        info,
        path=model_ref,
        recipe=text_recipe.to_json(),
        recipe_key=text_recipe.key,
        index_name=index_name,
    )
    return info, spec


def check_recipe(info: ModelInfo, recipe: TextRecipe) -> int:
    """Content tokens per chunk for this model; ``RecipeError`` if the recipe does not fit it."""
    tokenizer = load_tokenizer(info)
    template = token_template(tokenizer, recipe.document_prefix)
    return recipe.content_tokens(
        max_seq_length=model_token_limit(info, tokenizer),
        special_tokens=len(template.tail),
        prefix_tokens=len(template.head),
    )


def info_of(entry: ModelRow) -> ModelInfo:
    """What workers need to load a registered model; ``ModelNotFound`` if it is gone from this machine."""
    ref = entry.path or entry.name
    return row_to(ModelInfo, entry, path=str(resolve_model_path(ref)), ref=ref)
