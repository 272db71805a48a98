"""The text recipe: what of a document a model embeds, and how long documents are cut into chunks.

Pure (no model, no Ray). A recipe is part of a registry entry: the same model with another recipe is
another entry with its own vectors, so changing the recipe never mixes vectors of two recipes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from jobs.embed.text import embedding_text
from jobs.errors import RecipeError
from storage.vector_files import CHUNK_SLOTS

#: Document fields a recipe may embed, in the order they are joined.
RECIPE_FIELDS = ("title", "text")
#: Most chunks one document may have (chunk numbers are packed next to the document id in index keys).
MAX_CHUNKS_LIMIT = CHUNK_SLOTS


@dataclass(frozen=True)
class TextRecipe:
    """Which fields are embedded and how they are chunked.

    ``chunk_tokens`` is the number of content tokens per chunk (``None``: as many as the model takes
    after its special tokens and the document prefix); consecutive chunks share ``overlap`` tokens;
    a document longer than ``max_chunks`` chunks is embedded from its first ``max_chunks`` only.
    ``document_prefix`` / ``query_prefix`` are prepended to every chunk / query (e5-style models want
    ``"passage: "`` and ``"query: "``).
    """

    fields: tuple[str, ...] = ("title", "text")
    chunk_tokens: int | None = None
    overlap: int = 32
    max_chunks: int = 64
    document_prefix: str = ""
    query_prefix: str = ""

    def __post_init__(self) -> None:
        unknown = [f for f in self.fields if f not in RECIPE_FIELDS]
        if not self.fields or unknown:
            raise RecipeError(
                f"fields must be a non-empty subset of {', '.join(RECIPE_FIELDS)}; got {list(self.fields)}"
            )
        if self.chunk_tokens is not None and self.chunk_tokens < 8:
            raise RecipeError(f"chunk_tokens must be at least 8; got {self.chunk_tokens}")
        if self.overlap < 0:
            raise RecipeError(f"overlap must be 0 or more; got {self.overlap}")
        if self.chunk_tokens is not None and self.overlap >= self.chunk_tokens:
            raise RecipeError(
                f"overlap ({self.overlap}) must be smaller than chunk_tokens ({self.chunk_tokens})"
            )
        if not 1 <= self.max_chunks <= MAX_CHUNKS_LIMIT:
            raise RecipeError(f"max_chunks must be between 1 and {MAX_CHUNKS_LIMIT}; got {self.max_chunks}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["fields"] = list(self.fields)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TextRecipe:
        values = dict(data)
        if "fields" in values:
            values["fields"] = tuple(values["fields"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def key(self) -> str:
        """A short stable digest: two entries of one model differ in recipe iff their keys differ."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def content_tokens(self, *, max_seq_length: int, special_tokens: int, prefix_tokens: int) -> int:
        """Content tokens per chunk for a model; ``RecipeError`` if the recipe asks for more than it takes."""
        room = max_seq_length - special_tokens - prefix_tokens
        if room < 8:
            raise RecipeError(
                f"the model takes {max_seq_length} tokens; its special tokens and the document prefix "
                "leave fewer than 8 for text"
            )
        if self.chunk_tokens is None:
            return room
        if self.chunk_tokens > room:
            raise RecipeError(
                f"chunk_tokens {self.chunk_tokens} is more than the model takes ({room} after its special "
                "tokens and the document prefix); lower --chunk-tokens"
            )
        return self.chunk_tokens

    def text_of(self, title: str, text: str) -> str:
        """The embedded text of a document: the recipe's fields, title first (``"Title. Text"``)."""
        return embedding_text(title if "title" in self.fields else "", text if "text" in self.fields else "")
