"""The statistics rollout gates judge by (serving.rollouts.judge): exact binomial tails and
order-statistic bounds on quantiles of the live histograms (serving.livestats), so that a gate
fails only when the figures show it at the rollout's `confidence`, never on the noise of a few
hundred requests.

A gate compares the candidate with the stable version. Every test is one-sided (only worse
fails) and needs both arms to have `min_requests`:
1. errors: the candidate's 5xx count is improbably high both for `max_error_rate` (binomial
   tail) and, when the stable version has figures, for the errors both arms had together
   (given k errors over both arms, each falls on the candidate with its share of the requests
   when the versions are alike: a conditional binomial test, exact for any sample size).
2. compute per row: the worker's compute time of each request's batch ÷ the batch's rows, the
   version's own cost whatever the queue. The candidate's median's lower bound must not exceed
   `max_compute_ratio` × the stable median's upper bound (bounds from the binomial ranks of
   the order statistics). A step passes only once the converse is shown too, at
   PASS_CONFIDENCE: the candidate median's upper bound within `max_compute_ratio` × the stable
   median's lower bound. Until one of the two is shown the step holds: a small fixed cost (a
   tiny model's 100× the work per row measured 1.5× its time, most of it waking threads) needs
   more requests than a step's hold to tell from noise. A canary step still undecided after
   UNDECIDED_HOLDS × its hold is rolled back: unproven is not promoted.
3. p99: only when both arms share the window (the same worker, machine and moments): the
   requests slower than `max_p99_ratio` × the stable p99 + `p99_tolerance_ms` must be more than
   1% of the candidate's (its p99 is above that limit) and more than its share of the slow
   requests of both arms (a stall of the shared worker or web process slows both arms alike)."""

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p), exact (summed from the side of k away from the mean)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    if k > n * p:
        return min(1.0, _sum_from(k, n, p, upward=True))
    return max(0.0, 1.0 - _sum_from(k - 1, n, p, upward=False))


def _sum_from(start: int, n: int, p: float, *, upward: bool) -> float:
    """Σ P(X = i) from i = start away from the mean to the end, stopped once terms are negligible."""
    log_first = (math.lgamma(n + 1) - math.lgamma(start + 1) - math.lgamma(n - start + 1)
                 + start * math.log(p) + (n - start) * math.log1p(-p))
    odds = p / (1.0 - p)
    total = term = 1.0
    i = start
    while (i < n) if upward else (i > 0):
        term *= (n - i) / (i + 1) * odds if upward else i / (n - i + 1) / odds
        i += 1 if upward else -1
        total += term
        if term < 1e-16 * total:
            break
    return math.exp(log_first) * total


PASS_CONFIDENCE = 0.95  # how surely a candidate must be shown within max_compute_ratio to pass a step
UNDECIDED_HOLDS = 5  # a canary step neither failed nor shown within after this many holds: rolled back


def rank_bounds(n: int, q: float, alpha: float) -> tuple[int | None, int | None]:
    """Ranks (1-based, of n sorted samples) bounding the q-quantile: the sample at the first is
    at or below it, the one at the second at or above it, each with probability ≥ 1 - alpha;
    None where n samples are too few for that bound."""
    if n <= 0:
        return None, None
    # Lower: the largest r with P(Bin(n, q) ≥ r) ≥ 1 - alpha (tails fall as r grows).
    low: int | None = None
    lo, hi = 1, n
    while lo <= hi:
        mid = (lo + hi) // 2
        if binomial_tail(mid, n, q) >= 1 - alpha:
            low, lo = mid, mid + 1
        else:
            hi = mid - 1
    # Upper: the smallest s with P(Bin(n, q) ≥ s) ≤ alpha.
    high: int | None = None
    lo, hi = 1, n
    while lo <= hi:
        mid = (lo + hi) // 2
        if binomial_tail(mid, n, q) <= alpha:
            high, hi = mid, mid - 1
        else:
            lo = mid + 1
    return low, high


@dataclass(frozen=True)
class Histogram:
    """One histogram of a livestats counter: `prefix` + bucket index → count, over `edges`."""

    buckets: tuple[tuple[int, int], ...]  # (bucket index, count), ascending
    edges: Sequence[float]

    @classmethod
    def of(cls, counts: Counter[str], prefix: str, edges: Sequence[float]) -> "Histogram":
        found = sorted((int(field[len(prefix):]), n) for field, n in counts.items()
                       if field.startswith(prefix) and field[len(prefix):].isdigit() and n > 0)
        return cls(tuple(found), edges)

    @property
    def total(self) -> int:
        return sum(n for _, n in self.buckets)

    def _span(self, index: int) -> tuple[float, float]:
        low = self.edges[index - 1] if index > 0 else 0.0
        high = self.edges[index] if index < len(self.edges) else self.edges[-1]
        return low, high

    def at_rank(self, rank: float) -> float | None:
        """The value of the sample at `rank` (1-based), interpolated within its bucket."""
        seen = 0
        for index, n in self.buckets:
            if seen + n >= rank:
                low, high = self._span(index)
                return low + (high - low) * (max(0.0, rank - seen - 0.5) / n)
            seen += n
        return None

    def quantile(self, q: float) -> float | None:
        return self.at_rank(max(1.0, q * self.total))

    def above(self, limit: float) -> float:
        """How many samples exceed `limit` (those of its bucket in proportion)."""
        count = 0.0
        for index, n in self.buckets:
            low, high = self._span(index)
            if low >= limit:
                count += n
            elif high > limit:
                count += n * (high - limit) / (high - low)
        return count


def more_than_share(k_candidate: int, k_stable: int, n_candidate: int, n_stable: int) -> float:
    """P-value of 'the candidate has more of the events than its share of the requests': given
    the events of both arms, each is the candidate's with probability n_c / (n_c + n_s) when the
    two versions are alike."""
    if n_candidate + n_stable == 0:
        return 1.0
    return binomial_tail(k_candidate, k_candidate + k_stable, n_candidate / (n_candidate + n_stable))


@dataclass(frozen=True)
class Arm:
    """One version's gated figures in the window judged (livestats.gated counts)."""

    requests: int
    errors: int
    total: Histogram  # total latency, ms
    per_row: Histogram  # compute ÷ batch rows, ms


def check_errors(candidate: Arm, stable: Arm | None, gates: dict[str, float], alpha: float
                 ) -> tuple[str | None, dict[str, float | int | None]]:
    """Gate 1 (see the module's docstring): a failure message or None, and its figures."""
    n, k, limit = candidate.requests, candidate.errors, gates["max_error_rate"]
    p_limit = binomial_tail(k, n, limit)
    p_stable = more_than_share(k, stable.errors, n, stable.requests) if stable else None
    figures = {"p_value": round(max(p_limit, p_stable or 0.0), 6),
               "stable_error_rate": round(stable.errors / stable.requests, 5) if stable else None}
    if n and k / n > limit and p_limit <= alpha and (p_stable is None or p_stable <= alpha):
        versus = f"; stable {stable.errors} of {stable.requests}" if stable else ""
        return f"error rate {k / n:.3f} > {limit} ({k} of {n} requests{versus})", figures
    return None, figures


def check_compute(candidate: Arm, stable: Arm, gates: dict[str, float], alpha: float, overdue: bool = False
                  ) -> tuple[str | None, dict[str, float | bool | None]]:
    """Gate 2: the candidate's compute per row against the stable version's, medians bounded:
    a failure when shown above `max_compute_ratio`, `within` when shown under it (PASS_CONFIDENCE);
    `overdue` (undecided for UNDECIDED_HOLDS holds) fails what is not shown within."""
    ratio = gates["max_compute_ratio"]
    median, stable_median = candidate.per_row.quantile(0.5), stable.per_row.quantile(0.5)

    def bound(arm: Arm, side: int, a: float) -> float | None:
        rank = rank_bounds(arm.per_row.total, 0.5, a)[side]
        return arm.per_row.at_rank(rank) if rank else None

    low, high = bound(candidate, 0, alpha), bound(stable, 1, alpha)
    upper, stable_low = bound(candidate, 1, 1 - PASS_CONFIDENCE), bound(stable, 0, 1 - PASS_CONFIDENCE)
    within = upper is not None and stable_low is not None and upper <= ratio * stable_low
    figures: dict[str, float | bool | None] = {
        "candidate_us": _us(median), "stable_us": _us(stable_median),
        "ratio": round(median / stable_median, 3) if median and stable_median else None,
        "candidate_low_us": _us(low), "stable_high_us": _us(high), "candidate_high_us": _us(upper),
        "stable_low_us": _us(stable_low), "within": within}
    if median is None or not stable_median:
        return None, figures
    shown = (f"compute per row {median * 1000:.1f} µs = {median / stable_median:.1f} × stable "
             f"{stable_median * 1000:.1f} µs")
    if low is not None and high is not None and low > ratio * high:
        return f"{shown} > {ratio} ×", figures
    if overdue and not within:
        return f"{shown}: not shown within {ratio} × after {UNDECIDED_HOLDS} holds of the step", figures
    return None, figures


def check_p99(candidate: Arm, stable: Arm, gates: dict[str, float], alpha: float
              ) -> tuple[str | None, dict[str, float | None]]:
    """Gate 3: the candidate's slow requests against the stable version's, same window only."""
    p99, stable_p99 = candidate.total.quantile(0.99), stable.total.quantile(0.99)
    if p99 is None or stable_p99 is None:
        return None, {}
    limit = gates["max_p99_ratio"] * stable_p99 + gates["p99_tolerance_ms"]
    slow, stable_slow = round(candidate.total.above(limit)), round(stable.total.above(limit))
    p_tail = binomial_tail(slow, candidate.total.total, 0.01)
    p_share = more_than_share(slow, stable_slow, candidate.total.total, stable.total.total)
    figures: dict[str, float | None] = {"limit_ms": round(limit, 3), "slow": slow, "stable_slow": stable_slow,
                                        "p_value": round(max(p_tail, p_share), 6)}
    if p99 > limit and p_tail <= alpha and p_share <= alpha:
        return (f"p99 {p99:.1f} ms > {gates['max_p99_ratio']} × stable p99 {stable_p99:.1f} ms "
                f"+ {gates['p99_tolerance_ms']} ms ({slow} of {candidate.total.total} requests above "
                f"{limit:.1f} ms, stable {stable_slow} of {stable.total.total})"), figures
    return None, figures


def _us(ms: float | None) -> float | None:
    return round(ms * 1000, 2) if ms is not None else None
