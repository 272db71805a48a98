"""Near-duplicate fingerprints: MinHash over word shingles, banded for LSH. Pure.

Two texts whose shingle sets have Jaccard similarity ``s`` share at least one of ``BANDS`` buckets with
probability ``1 - (1 - s**ROWS)**BANDS`` (0.9996 at s = 0.8, 0.06 at s = 0.3); candidates sharing a bucket
are then confirmed with the signatures' estimate of ``s`` against a threshold.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from datasketch import MinHash

#: MinHash permutations per signature.
NUM_PERM = 128
#: LSH bands and rows per band (BANDS * ROWS == NUM_PERM).
BANDS = 32
ROWS = 4
#: Word shingle length.
SHINGLE = 5
#: Texts with fewer words than this get no fingerprint (too short to call near-duplicates).
MIN_WORDS = 40
#: Seed of the permutations: fixed, so signatures from every worker and run are comparable.
SEED = 20261123
#: datasketch's 32-bit affine hashing scheme (its default since 2.0): values fit in uint32.
SCHEME = "affine32"
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Fingerprint:
    signature: bytes  # NUM_PERM little-endian uint32
    buckets: tuple[int, ...]  # one signed 64-bit bucket per band


@lru_cache(maxsize=1)
def _permutations() -> tuple[np.ndarray, np.ndarray]:
    template = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME)
    a, b = template.permutations
    return a, b


def shingles(text: str) -> set[bytes]:
    words = _WORD.findall(text.lower())
    if len(words) < SHINGLE:
        return {" ".join(words).encode("utf-8")} if words else set()
    return {" ".join(words[i : i + SHINGLE]).encode("utf-8") for i in range(len(words) - SHINGLE + 1)}


def fingerprint(text: str) -> Fingerprint | None:
    """The MinHash signature and LSH buckets of a text, or ``None`` for texts under ``MIN_WORDS`` words."""
    if len(_WORD.findall(text)) < MIN_WORDS:
        return None
    minhash = MinHash(num_perm=NUM_PERM, seed=SEED, permutations=_permutations(), scheme=SCHEME)
    minhash.update_batch(list(shingles(text)))
    values = minhash.hashvalues.astype("<u4")
    return Fingerprint(values.tobytes(), band_buckets(values))


def band_buckets(values: np.ndarray) -> tuple[int, ...]:
    buckets = []
    for band in range(BANDS):
        chunk = values[band * ROWS : (band + 1) * ROWS].astype("<u4").tobytes()
        digest = hashlib.blake2b(chunk, digest_size=8).digest()
        buckets.append(int.from_bytes(digest, "little", signed=True))
    return tuple(buckets)


def similarity(a: bytes, b: bytes) -> float:
    """Estimated Jaccard similarity of two signatures: the share of equal MinHash values."""
    va, vb = np.frombuffer(a, dtype="<u4"), np.frombuffer(b, dtype="<u4")
    if va.shape != vb.shape:
        raise ValueError("signatures of different lengths cannot be compared")
    return float(np.count_nonzero(va == vb)) / len(va)
