"""A/B experiments on recommendations (pure: no Ray, no SQL, no FastAPI).

- ``assign_variant``: which variant a subject sees, decided by a hash of the experiment and the subject, so
  every replica agrees without storing anything and a subject keeps their variant for the experiment's life;
  the hash is salted by the experiment's name, so assignments in two experiments are independent.
- ``wilson``: a variant's rate (clicks over impressions, say) with its Wilson score interval, which stays
  inside [0, 1] and behaves at 0 or all successes where the normal approximation does not.
- ``difference``: variant b's rate minus variant a's, with its normal-approximation interval.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

#: The two-sided 95 % quantile of the standard normal distribution.
Z_95 = 1.959963984540054


def assign_variant(experiment: str, subject: str, variants: Sequence[tuple[str, float]]) -> str:
    """The variant ``subject`` sees in ``experiment``: sha256 of ``f"{experiment}\\x00{subject}"`` gives a
    number ``u`` in [0, 1) (the first 8 bytes, big-endian, of which the top 53 bits, so that ``u`` is exact
    in a float and never 1), and the variant whose interval of cumulative normalised weight holds ``u``
    wins. ``variants`` are ``(name, weight)`` pairs, weights > 0, in a fixed order (reordering them
    reassigns subjects)."""
    if not variants:
        raise ValueError(f"experiment {experiment!r} has no variants; give at least one (name, weight)")
    names: set[str] = set()
    for name, weight in variants:
        if not 0.0 < weight < math.inf:
            raise ValueError(
                f"variant {name!r} of experiment {experiment!r} has weight {weight!r}; weights must be > 0"
            )
        if name in names:
            raise ValueError(f"variant {name!r} appears twice in experiment {experiment!r}")
        names.add(name)
    digest = hashlib.sha256(f"{experiment}\x00{subject}".encode()).digest()
    u = (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)
    total = math.fsum(weight for _, weight in variants)
    cumulative = 0.0
    for name, weight in variants:
        cumulative += weight / total
        if u < cumulative:
            return name
    return variants[-1][0]  # the sum of the normalised weights may round to a hair below 1


@dataclass(frozen=True)
class Rate:
    """``successes`` of ``trials``, their ``rate`` and its interval ``[low, high]`` (``None`` without
    trials)."""

    successes: int
    trials: int
    rate: float | None
    low: float | None
    high: float | None


def wilson(successes: int, trials: int, *, z: float = Z_95) -> Rate:
    """The rate and its Wilson score interval (95 % by default), clamped to [0, 1]; the bound at 0 for no
    successes and at 1 for all is exact (rounding would leave it a hair inside)."""
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes of {trials} trials; need 0 <= successes <= trials")
    if trials == 0:
        return Rate(successes, trials, None, None, None)
    p = successes / trials
    z2 = z * z
    denominator = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / trials + z2 / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return Rate(successes, trials, p, low, high)


def difference(a: Rate, b: Rate, *, z: float = Z_95) -> tuple[float, float, float] | None:
    """``b.rate - a.rate`` and its normal-approximation interval ``(difference, low, high)`` (95 % by
    default); ``None`` when either has no trials."""
    if a.rate is None or b.rate is None or a.trials == 0 or b.trials == 0:
        return None
    diff = b.rate - a.rate
    se = math.sqrt(a.rate * (1.0 - a.rate) / a.trials + b.rate * (1.0 - b.rate) / b.trials)
    return diff, diff - z * se, diff + z * se
