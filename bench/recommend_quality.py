"""Benchmark: offline quality of news recommenders on a SIMULATED interaction log over HuffPost 2018.

The log is not real behaviour: ``rec_sim.py`` draws users whose interests are HuffPost categories (1 to
3 each), a personal taste vector, a latent appeal per headline and reads within the last week of news
(its docstring states the whole model and every constant; they are in the JSON too). Document ids are
the rows of ``trend_data.huffpost()`` (4,782 headlines, 19 categories, 88 days, oldest first); every
method gets the same cached MiniLM vectors (``trend_data.vectors``) and the documents' times.

Protocol (``rec_eval.py``): per user with at least 3 clicks, the last click is held out (with that
user's later events and other events on that document); each method is fitted once on the rest and
asked, per held-out user, for 10 documents at the held-out click's time - 1 s, excluding documents the
user interacted with in training. Reported per method: HitRate@10, nDCG@10, catalogue coverage,
intra-list diversity, ``unpublished_share`` (recommended documents not yet out at that time), fit time
and median time per ``recommend`` call. With several seeds (``--seeds 7,8,9``): each seed's figures and
per method the median over seeds.

    python bench/recommend_quality.py                               # 2,000 users, seed 7, every method
    python bench/recommend_quality.py --seeds 7,8,9 --methods popular,als

Methods are looked up in ``METHODS`` (name -> factory of a ``rec_eval.Method``); Pulse's recommenders
are added there. ``als`` needs ``implicit`` (bench-only: ``pip install implicit``). Prints one JSON
object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from common import emit
from rec_baselines import DailyALS, ImplicitALS, MostPopular, RecentPopular
from rec_eval import Method, evaluate
from rec_pulse import methods as pulse_methods
from rec_sim import SimParams, simulate, split_last_positive
from trend_data import huffpost, vectors

#: The methods by name; each factory returns a fresh, unfitted method.
METHODS: dict[str, Callable[[], Method]] = {
    "popular": MostPopular,
    "recent_popular": RecentPopular,
    "als": ImplicitALS,
    "als_daily": DailyALS,
    **pulse_methods(),  # type: ignore[dict-item]
}
DESCRIPTION = (
    "SIMULATED interaction log (not real users): HuffPost 2018 categories stand in for users' interests; "
    "see bench/rec_sim.py for the model. Leave-last-positive-out: each user's last click is ranked among "
    "all documents not interacted with in training."
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_seed(seed: int, *, params: SimParams, names: list[str], k: int, corpus: Any, vecs: Any) -> dict:
    start = time.perf_counter()
    sim = simulate(labels=corpus.labels, dates=corpus.dates, vectors=vecs, params=params, seed=seed)
    train, held_out = split_last_positive(sim.events)
    simulate_s = time.perf_counter() - start
    clicks = Counter(e.user for e in sim.events if e.type == "click")
    counts = {
        "users": len(sim.truth),
        "users_with_clicks": len(clicks),
        "held_out_users": len(held_out),
        "events": len(sim.events),
        "events_by_type": dict(sorted(Counter(e.type for e in sim.events).items())),
        "train_events": len(train),
        "clicks_per_user_median": statistics.median(clicks.values()) if clicks else 0,
        "skipped_reads": sim.skipped_reads,
    }
    log(f"seed {seed}: {counts['events']} events, {len(held_out)} held-out users ({simulate_s:.1f} s)")
    methods = {}
    for name in names:
        method = METHODS[name]()
        start = time.perf_counter()
        result = evaluate(method, train, held_out, k=k, vectors=vecs, doc_times=sim.doc_times)
        result["wall_s"] = time.perf_counter() - start
        methods[name] = result
        log(
            f"seed {seed} {name}: hit@{k} {result['hit_rate']:.3f} ndcg@{k} {result['ndcg']:.3f} "
            f"coverage {result['coverage']:.3f} ({result['wall_s']:.1f} s)"
        )
    return {"seed": seed, "simulate_s": simulate_s, "counts": counts, "methods": methods}


def front_door_run(seed: int, *, params: SimParams, k: int, corpus: Any, vecs: Any) -> dict[str, Any]:
    """The blend through a running platform's HTTP API on ``seed``'s log, beside the in-process core."""
    from rec_front_door import FrontDoorMethod

    sim = simulate(labels=corpus.labels, dates=corpus.dates, vectors=vecs, params=params, seed=seed)
    train, held_out = split_last_positive(sim.events)
    method = FrontDoorMethod(corpus=corpus)
    try:
        start = time.perf_counter()
        result = evaluate(method, train, held_out, k=k, vectors=vecs, doc_times=sim.doc_times)
        result["wall_s"] = time.perf_counter() - start
        result["platform"] = method.report()
    finally:
        method.close()
    log(f"seed {seed} front door: hit@{k} {result['hit_rate']:.3f} ndcg@{k} {result['ndcg']:.3f}")
    return {"seed": seed, "method": "pulse_blend through GET /v1/recommend", **result}


def medians(runs: list[dict], names: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for name in names:
        keys = runs[0]["methods"][name].keys()
        out[name] = {key: statistics.median(r["methods"][name][key] for r in runs) for key in keys}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=SimParams.n_users)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--seeds", default="", help="comma-separated seeds; overrides --seed")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--front-door",
        action="store_true",
        help="also run /v1/recommend of a private platform on the first seed (rec_front_door.py)",
    )
    args = parser.parse_args(argv)
    names = [n for n in args.methods.split(",") if n]
    if unknown := [n for n in names if n not in METHODS]:
        parser.error(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s] or [args.seed]
    params = SimParams(n_users=args.users)
    corpus = huffpost()
    vecs = vectors(corpus)
    runs = [run_seed(s, params=params, names=names, k=args.k, corpus=corpus, vecs=vecs) for s in seeds]
    front_door = (
        front_door_run(seeds[0], params=params, k=args.k, corpus=corpus, vecs=vecs)
        if args.front_door
        else None
    )
    emit(
        {
            "benchmark": "recommend_quality",
            "simulated": True,
            "description": DESCRIPTION,
            "data": {"corpus": corpus.name, "documents": len(corpus.ids), "dim": int(vecs.shape[1])},
            "simulation": asdict(params),
            "protocol": {
                "k": args.k,
                "split": "last click per user with >= 3 clicks",
                "now": "click ts - 1 s",
            },
            "seeds": seeds,
            "runs": runs,
            "median_over_seeds": medians(runs, names),
            "front_door": front_door,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
