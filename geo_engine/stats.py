"""Intervals for a rate and for the difference of two rates (campaign results, SPEC 9).

Pure arithmetic. A visit rate is a binomial proportion ``x / n``; its 95 % interval is
Wilson's score interval (good at small ``n`` and at rates near 0 or 1, where the textbook
``p +- 1.96 sqrt(p(1-p)/n)`` falls outside [0, 1] or collapses to a point). The difference of
two independent rates (exposed minus control: the lift) takes Newcombe's hybrid score
interval, built from the two Wilson intervals (Newcombe 1998, method 10).

    >>> lo, hi = wilson(3, 10)
    >>> round(lo, 4), round(hi, 4)
    (0.1078, 0.6032)
"""

from __future__ import annotations

import math

__all__ = ["Z95", "newcombe", "wilson"]

#: the standard normal quantile of a two-sided 95 % interval
Z95 = 1.959963984540054


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for ``x`` successes of ``n`` (``n`` > 0)."""
    if n <= 0:
        raise ValueError("a rate needs at least one trial")
    if not 0 <= x <= n:
        raise ValueError(f"successes {x} outside 0..{n}")
    p = x / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """The difference ``x1/n1 - x2/n2`` and Newcombe's hybrid score interval around it."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
