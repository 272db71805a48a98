"""Cutting documents into token windows and pooling chunk vectors back into document vectors.

Pure: it works on token ids and character offsets from the model's own tokenizer (passed in), so the
windows match what the model sees exactly. A window holds at most ``size`` content tokens; consecutive
windows share ``overlap`` tokens, and the last window is moved back to end at the document's end (a
full window rather than a sliver of a few tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TokenTemplate:
    """Token ids around every chunk: the model's special tokens and the recipe's document prefix."""

    head: tuple[int, ...]  # e.g. [CLS] + the tokens of "passage: "
    tail: tuple[int, ...]  # e.g. [SEP]

    @property
    def extra(self) -> int:
        return len(self.head) + len(self.tail)


def token_template(tokenizer: Any, document_prefix: str = "") -> TokenTemplate:
    """The special tokens a tokenizer wraps one text in, found by tokenizing a probe both ways."""
    probe = "pulse"
    bare = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            head, tail = full[:start], full[start + len(bare) :]
            break
    else:  # a tokenizer that rewrites the text when adding special tokens: no wrapping known
        head, tail = [], []
    prefix = (
        list(tokenizer(document_prefix, add_special_tokens=False)["input_ids"]) if document_prefix else []
    )
    return TokenTemplate(head=tuple(head + prefix), tail=tuple(tail))


def spans(n_tokens: int, *, size: int, overlap: int, max_chunks: int) -> list[tuple[int, int]]:
    """Token windows ``[start, end)`` covering ``n_tokens`` (the first ``max_chunks`` of them)."""
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(f"need 0 <= overlap < size, got size={size} overlap={overlap}")
    if n_tokens <= 0:
        return []
    if n_tokens <= size:
        return [(0, n_tokens)]
    stride = size - overlap
    out: list[tuple[int, int]] = []
    start = 0
    while len(out) < max_chunks:
        end = start + size
        if end >= n_tokens:
            out.append((max(0, n_tokens - size), n_tokens))
            break
        out.append((start, end))
        start += stride
    return out


@dataclass(frozen=True)
class Chunk:
    input_ids: list[int]  # with the template's head and tail
    char_start: int
    char_end: int


def chunk_document(
    ids: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    *,
    template: TokenTemplate,
    size: int,
    overlap: int,
    max_chunks: int,
) -> list[Chunk]:
    """The chunks of one tokenized text; character offsets point into the text that was tokenized."""
    head, tail = list(template.head), list(template.tail)
    return [
        Chunk(head + list(ids[s:e]) + tail, int(offsets[s][0]), int(offsets[e - 1][1]))
        for s, e in spans(len(ids), size=size, overlap=overlap, max_chunks=max_chunks)
    ]


def pool_documents(chunk_vectors: np.ndarray, counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """One vector per document: the mean of its consecutive chunk vectors, L2-normalised."""
    counts_arr = np.asarray(counts, dtype=np.int64)
    if counts_arr.sum() != len(chunk_vectors) or (counts_arr <= 0).any():
        raise ValueError("every document needs at least one chunk and the counts must cover every chunk")
    starts = np.concatenate([[0], np.cumsum(counts_arr)[:-1]])
    sums = np.add.reduceat(chunk_vectors.astype(np.float32, copy=False), starts, axis=0)
    means = sums / counts_arr[:, None]
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return (means / np.where(norms > 0, norms, 1.0)).astype(np.float32)
