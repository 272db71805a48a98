"""How the trend clusterer's ``assign_threshold`` was chosen: precision and coverage of immediate assignment.

On Tweets-T (MiniLM vectors), a random half of the documents gives each story its centroid; each
document of the other half is assigned to its most similar centroid when the cosine similarity is at
least the threshold. ``coverage``: share of documents assigned at once; ``precision``: share of those
given their own story. The baseline is the same assignment with no threshold (every document assigned).
Prints one JSON object. Run: ``python bench/trend_threshold.py`` (seconds; vectors cached by
bench/trend_data.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import trend_data

THRESHOLDS = (0.0, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)


def main() -> None:
    corpus = trend_data.tweets()
    x = trend_data.vectors(corpus)
    y = np.asarray(corpus.labels)
    perm = np.random.default_rng(0).permutation(len(x))
    x, y = x[perm], y[perm]
    half = len(x) // 2
    stories = np.unique(y[:half])
    centroids = np.stack([x[:half][y[:half] == s].mean(axis=0) for s in stories])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    sims = x[half:] @ centroids.T
    best, best_sim = sims.argmax(axis=1), sims.max(axis=1)
    right = stories[best] == y[half:]
    rows = []
    for threshold in THRESHOLDS:
        taken = best_sim >= threshold
        rows.append(
            {
                "threshold": threshold,
                "coverage": round(float(taken.mean()), 4),
                "precision": round(float(right[taken].mean()), 4),
            }
        )
    baseline = rows[0]["precision"]
    for row in rows:
        row["precision_vs_no_threshold"] = round(row["precision"] / baseline, 4)
    print(json.dumps({"data": "tweets", "documents": len(x) - half, "stories": len(stories), "rows": rows}))


if __name__ == "__main__":
    main()
