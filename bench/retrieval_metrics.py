"""Retrieval quality metrics with trec_eval's definitions (as BEIR reports them through pytrec_eval).

Pure, no dependencies. ``qrels`` maps a query id to ``{document id: graded relevance}``; a run maps a
query id to its ranked document ids, best first.

- nDCG@k (``ndcg_cut_k``): gain = the graded relevance (not ``2**rel - 1``), discount ``log2(rank + 1)``
  with ranks from 1; the ideal DCG ranks the query's judged relevant documents by relevance, cut at k.
- Recall@k (``recall_k``): relevant documents in the top k / all relevant documents of the query.

Documents judged 0 (or negative) are not relevant. A query with no relevant document is skipped, as
trec_eval does; a query with no run counts 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

Qrels = Mapping[str, Mapping[int, int]]


def dcg(gains: Sequence[float]) -> float:
    return sum(g / math.log2(rank + 2) for rank, g in enumerate(gains))


def ndcg_at_k(ranked: Sequence[int], judged: Mapping[int, int], k: int) -> float:
    """nDCG@k of one ranked list."""
    ideal = dcg(sorted((r for r in judged.values() if r > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([max(judged.get(d, 0), 0) for d in ranked[:k]]) / ideal


def recall_at_k(ranked: Sequence[int], judged: Mapping[int, int], k: int) -> float:
    """Recall@k of one ranked list."""
    relevant = {d for d, r in judged.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def evaluate(
    run: Mapping[str, Sequence[int]], qrels: Qrels, queries: Sequence[str] | None = None
) -> dict[str, float]:
    """Mean nDCG@10 and Recall@100 over ``queries`` (default: every query of ``qrels``)."""
    chosen = [q for q in (queries if queries is not None else list(qrels)) if q in qrels]
    chosen = [q for q in chosen if any(r > 0 for r in qrels[q].values())]
    if not chosen:
        return {"ndcg@10": 0.0, "recall@100": 0.0, "queries": 0}
    ndcg = sum(ndcg_at_k(run.get(q, ()), qrels[q], 10) for q in chosen) / len(chosen)
    recall = sum(recall_at_k(run.get(q, ()), qrels[q], 100) for q in chosen) / len(chosen)
    return {"ndcg@10": ndcg, "recall@100": recall, "queries": len(chosen)}
