"""The statistics of rollout gates (serving.gates), and `judge` over figures written to Redis as
web processes write them: exact binomial tails, order-statistic bounds, and gates that fail
bad candidates but not the noise of a few hundred requests (issue 21 item 6)."""

import math
import time
from collections import Counter
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from serving import gates, livestats, rollouts
from serving.models import GATE_DEFAULTS, Rollout

ALPHA = 1 - GATE_DEFAULTS["confidence"]


def exact_tail(k: int, n: int, p: float) -> float:
    q = Fraction(p)
    return float(sum(math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(max(k, 0), n + 1)))


@pytest.mark.parametrize(("k", "n", "p"), [
    (0, 10, 0.3), (1, 10, 0.01), (3, 10, 0.5), (10, 10, 0.5), (11, 10, 0.5), (5, 300, 0.01), (12, 400, 0.01),
    (150, 300, 0.5), (40, 120, 0.25), (299, 300, 0.99), (290, 300, 0.99),
])
def test_binomial_tail_is_exact(k: int, n: int, p: float) -> None:
    assert gates.binomial_tail(k, n, p) == pytest.approx(exact_tail(k, n, p), rel=1e-9, abs=1e-300)


def test_binomial_tail_holds_for_large_windows() -> None:
    # 300k requests (10k/s over 30 s): a 1% rate observed as 3000 is unremarkable, 3300 is not.
    assert 0.4 < gates.binomial_tail(3000, 300_000, 0.01) < 0.6
    assert gates.binomial_tail(3300, 300_000, 0.01) < 1e-6


@pytest.mark.parametrize(("n", "q"), [(9, 0.5), (50, 0.5), (300, 0.5), (300, 0.9), (1000, 0.99)])
def test_rank_bounds_are_the_tightest_with_their_confidence(n: int, q: float) -> None:
    low, high = gates.rank_bounds(n, q, ALPHA)
    if low is not None:  # P(the low-th sample ≤ the quantile) = P(Bin(n, q) ≥ low) ≥ 1 - alpha, tightest
        assert exact_tail(low, n, q) >= 1 - ALPHA and (low == n or exact_tail(low + 1, n, q) < 1 - ALPHA)
    if high is not None:
        assert exact_tail(high, n, q) <= ALPHA and exact_tail(high - 1, n, q) > ALPHA
    assert (low is None) == (exact_tail(1, n, q) < 1 - ALPHA)
    assert (high is None) == (exact_tail(n, n, q) > ALPHA)


def test_too_few_samples_bound_no_p99_from_above() -> None:
    # With 300 samples even the largest is below the p99 more often than 1 in 1000 times.
    assert gates.rank_bounds(300, 0.99, ALPHA)[1] is None
    assert gates.rank_bounds(5, 0.5, ALPHA) == (None, None)


def histogram(samples_ms: np.ndarray, prefix: str, edges: tuple[float, ...]) -> Counter[str]:
    return Counter(f"{prefix}{livestats.bucket(float(ms), edges)}" for ms in samples_ms)


def arm(total_ms: np.ndarray, row_ms: np.ndarray, errors: int = 0) -> gates.Arm:
    counts = histogram(total_ms, "t", livestats.LATENCY_EDGES_MS) + histogram(row_ms, "r", livestats.ROW_EDGES_MS)
    return gates.Arm(requests=len(total_ms) + errors, errors=errors,
                     total=gates.Histogram.of(counts, "t", livestats.LATENCY_EDGES_MS),
                     per_row=gates.Histogram.of(counts, "r", livestats.ROW_EDGES_MS))


def test_histogram_quantiles_and_counts_above_a_limit() -> None:
    counts = Counter({"t3": 50, "t5": 40, "t9": 10})  # 1-2 ms, 3-5 ms, 15-20 ms
    h = gates.Histogram.of(counts, "t", livestats.LATENCY_EDGES_MS)
    assert h.total == 100
    assert h.quantile(0.5) == pytest.approx(1.99)
    assert 15 <= (h.quantile(0.99) or 0) <= 20
    assert h.above(20) == 0 and h.above(4) == pytest.approx(30) and h.above(0) == 100


def latencies(rng: np.random.Generator, n: int, stalls: int = 0, scale: float = 1.0) -> np.ndarray:
    """What a small model's requests take on a shared machine: ~1 ms, a long tail, and `stalls`
    requests caught by a pause of the process or the machine (20-40 ms)."""
    sample = (0.6 + rng.gamma(2.0, 0.25, n)) * scale
    sample[rng.choice(n, stalls, replace=False)] = rng.uniform(20, 40, stalls)
    return sample


def rows_ms(rng: np.random.Generator, n: int, us: float) -> np.ndarray:
    """Compute per row as a busy worker measures it (make run, 2 cores): ~100 µs of waking
    onnxruntime's threads, varying, plus the version's own `us`."""
    return (100 * rng.lognormal(0, 0.25, n) + us) / 1000


def verdict(candidate: gates.Arm, stable: gates.Arm) -> list[str]:
    checks = (gates.check_errors(candidate, stable, GATE_DEFAULTS, ALPHA),
              gates.check_p99(candidate, stable, GATE_DEFAULTS, ALPHA),
              gates.check_compute(candidate, stable, GATE_DEFAULTS, ALPHA))
    return [failure for failure, _ in checks if failure]


def test_two_hundred_healthy_windows_with_stalls_pass_every_gate() -> None:
    """The noise the old gates rolled back on: a few hundred requests per arm, a few stalled
    requests falling on either arm (a shared worker's pause), one stray 5xx."""
    rng = np.random.default_rng(21)
    failures = []
    old_rule = 0
    for _ in range(200):
        n_c, n_s = int(rng.integers(60, 400)), int(rng.integers(60, 400))
        stalls = int(rng.integers(0, 8))
        on_candidate = int(rng.binomial(stalls, n_c / (n_c + n_s)))
        candidate = arm(latencies(rng, n_c, on_candidate), rows_ms(rng, n_c, 7.0), errors=int(rng.integers(0, 2)))
        stable = arm(latencies(rng, n_s, stalls - on_candidate), rows_ms(rng, n_s, 7.0))
        failures += verdict(candidate, stable)
        p99, stable_p99 = candidate.total.quantile(0.99) or 0, stable.total.quantile(0.99) or 0
        old_rule += p99 > 1.5 * stable_p99 + 2.0
    assert failures == []
    assert old_rule >= 20  # the same windows under the old rule (p99 > 1.5 × stable p99 + 2 ms)


@pytest.mark.parametrize(("bad", "reason"), [
    ("errors", "error rate"), ("slow rows", "compute per row"), ("heavy rows", "compute per row"),
    ("slow tail", "p99"),
])
def test_bad_candidates_fail_their_gate_within_a_few_hundred_requests(bad: str, reason: str) -> None:
    rng = np.random.default_rng(6)
    n = 300
    stable = arm(latencies(rng, n, 2), rows_ms(rng, n, 7.0))
    total, row_us, errors = latencies(rng, n, 2), 7.0, 0
    if bad == "errors":
        errors = 15  # 5%
    elif bad == "slow rows":
        row_us = 2300.0  # a row takes 2.3 ms more: 3× the latency of a 1.1 ms request
    elif bad == "heavy rows":
        row_us = 75.0  # 100× the work of the demo MLP, as make run's worker measured it
    else:
        total = latencies(rng, n, 30)  # 10% of its requests take 20-40 ms
    failures = verdict(arm(total, rows_ms(rng, n, row_us), errors), stable)
    assert len(failures) == 1 and failures[0].startswith(reason), failures


def test_a_step_passes_only_once_the_candidate_is_shown_within_its_compute_ratio() -> None:
    """Few requests prove nothing either way: the step holds. Enough show a healthy candidate
    within max_compute_ratio (it may pass) and a 1.6× one beyond it (it fails); one that stays
    undecided for UNDECIDED_HOLDS holds fails as unproven."""
    rng = np.random.default_rng(3)

    def compared(n: int, row_us: float, overdue: bool = False) -> tuple[str | None, dict[str, Any]]:
        return gates.check_compute(arm(latencies(rng, n), rows_ms(rng, n, row_us)),
                                   arm(latencies(rng, n), rows_ms(rng, n, 7.0)), GATE_DEFAULTS, ALPHA, overdue)

    failure, few = compared(12, 7.0)
    assert failure is None and few["within"] is False  # too few to show anything: hold
    failure, healthy = compared(600, 7.0)
    assert failure is None and healthy["within"] is True
    failure, heavy = compared(600, 60.0)  # ~1.6× per row: the worker's fixed cost hides most of it
    assert heavy["within"] is False and failure is not None and failure.endswith("> 1.3 ×"), failure
    failure, undecided = compared(12, 30.0, overdue=True)
    assert undecided["within"] is False and failure is not None
    assert failure.endswith("not shown within 1.3 × after 5 holds of the step"), failure


def test_a_candidate_is_not_failed_for_the_errors_the_stable_version_has_too() -> None:
    rng = np.random.default_rng(3)
    candidate = arm(latencies(rng, 300), rows_ms(rng, 300, 7.0), errors=12)
    stable = arm(latencies(rng, 300), rows_ms(rng, 300, 7.0), errors=11)
    failure, figures = gates.check_errors(candidate, stable, GATE_DEFAULTS, ALPHA)
    assert failure is None and figures["stable_error_rate"] == pytest.approx(11 / 311, abs=1e-5)
    failure, _ = gates.check_errors(candidate, None, GATE_DEFAULTS, ALPHA)
    assert failure == "error rate 0.038 > 0.01 (12 of 312 requests)"


def test_a_rare_error_is_not_enough_to_fail() -> None:
    rng = np.random.default_rng(4)
    candidate = arm(latencies(rng, 59), rows_ms(rng, 59, 7.0), errors=1)  # 1.7% of 60, over 1%
    stable = arm(latencies(rng, 120), rows_ms(rng, 120, 7.0))
    assert gates.check_errors(candidate, stable, GATE_DEFAULTS, ALPHA)[0] is None


# -- judge over Redis ------------------------------------------------------------------------

def write(version_id: int, second: int, counts: Counter[str]) -> None:
    conn = livestats.client()
    key = livestats.stats_key(version_id, second)
    for field, value in counts.items():
        conn.hincrby(key, field, value)
    conn.expire(key, 60)


def per_second(rng: np.random.Generator, n: int, row_us: float, errors: int = 0) -> Counter[str]:
    counts = Counter({"c200": n, "g200": n, "c500": errors, "g500": errors})
    counts += Counter(f"j{livestats.bucket(float(ms))}" for ms in latencies(rng, n))
    counts += histogram(rows_ms(rng, n, row_us), "r", livestats.ROW_EDGES_MS)
    return counts


def canary(client: Any, step: int, now: int) -> Rollout:
    response = client.post("/api/v1/models/iris/rollouts/", {
        "candidate": 2, "strategy": "canary", "steps": [50, 100], "step_seconds": 10,
        "gates": {"window_seconds": 10}}, format="json")
    assert response.status_code == 201, response.json()
    rollout = Rollout.objects.select_related("candidate_version", "stable_version").get()
    rollout.step_index, rollout.step_started_at = step, datetime.fromtimestamp(now - 12, tz=UTC)
    return rollout


@pytest.mark.django_db
@pytest.mark.parametrize(("row_us", "errors"), [(7.0, 0), (75.0, 0), (7.0, 5)])
def test_a_canary_step_sharing_traffic_is_judged_in_its_own_window_after_it_settles(
        iris: Any, client_for: Any, row_us: float, errors: int) -> None:
    now = int(time.time()) + 1000  # seconds no other test writes
    rollout = canary(client_for("engineer"), 0, now)
    rng = np.random.default_rng(9)
    for second in range(now - 12, now):
        # The first two seconds (the old split still routing): stable only, and slow.
        write(rollout.stable_version_id, second, per_second(rng, 50, 7.0 if second >= now - 10 else 500.0))
        if second >= now - 10:
            write(rollout.candidate_version_id, second, per_second(rng, 50, row_us, errors))
    verdict = rollouts.judge(rollout, now=now)
    assert verdict["window"] == verdict["stable_window"] == [now - 10, now]
    assert verdict["stable"]["requests"] == 500 and verdict["candidate"]["requests"] == 500 + 10 * errors
    assert set(verdict["checks"]) == {"errors", "p99", "compute_per_row"}
    if row_us == 7.0 and not errors:
        assert verdict["failures"] == [] and verdict["passed"]
        assert 0.9 < verdict["checks"]["compute_per_row"]["ratio"] < 1.1
    elif errors:
        assert verdict["failures"] == ["error rate 0.091 > 0.01 (50 of 550 requests; stable 0 of 500)"]
    else:
        [failure] = verdict["failures"]
        assert failure.startswith("compute per row ") and failure.endswith("> 1.3 ×"), failure
        assert verdict["checks"]["compute_per_row"]["ratio"] > 1.5


@pytest.mark.django_db
@pytest.mark.parametrize("errors", [0, 5])
def test_a_canarys_last_step_is_judged_on_errors_against_the_stable_versions_window_before_it(
        iris: Any, client_for: Any, errors: int) -> None:
    """At 100% the stable version has no traffic: its errors before the step stand in for it, and
    latency, which differs by the moment on a busy machine, is not compared across windows."""
    now = int(time.time()) + 2000
    rollout = canary(client_for("engineer"), 1, now)
    rng = np.random.default_rng(8)
    for second in range(now - 22, now - 12):  # the 50% step
        write(rollout.stable_version_id, second, per_second(rng, 50, 7.0))
    for second in range(now - 12, now):
        write(rollout.candidate_version_id, second, per_second(rng, 100, 300.0, errors))
    verdict = rollouts.judge(rollout, now=now)
    assert verdict["stable_window"] == [now - 22, now - 12] and verdict["judged"]
    assert verdict["stable"]["requests"] == 500 and verdict["candidate"]["requests"] == 1000 + 10 * errors
    assert set(verdict["checks"]) == {"errors"}
    if errors:
        assert verdict["failures"] == ["error rate 0.048 > 0.01 (50 of 1050 requests; stable 0 of 500)"]
    else:
        assert verdict["failures"] == [] and verdict["passed"]
