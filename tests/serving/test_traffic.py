"""Traffic splitting, A/B stickiness, shadow comparison and the live-figure arithmetic, as pure
functions (the integration tests run them through real processes)."""

from collections import Counter

import numpy as np
import pytest

from serving import livestats
from serving.v2 import traffic
from serving.v2.routes import ModelRoute


def split(arms: tuple[tuple[int, float], ...], sticky: tuple[str, str] | None = None) -> ModelRoute:
    return ModelRoute(1, "iris", 1, {}, active=1, arms=arms, sticky=sticky)


def test_unsplit_route_sends_everything_to_the_active_version() -> None:
    assert {traffic.choose(split(())) for _ in range(50)} == {1}


def test_weights_are_honoured() -> None:
    route = split(((1, 90.0), (2, 100.0)))
    picks = Counter(traffic.choose(route) for _ in range(5000))
    assert set(picks) == {1, 2}
    assert 0.07 < picks[2] / 5000 < 0.13


def test_a_sticky_key_always_lands_on_the_same_arm_and_keys_spread() -> None:
    route = split(((1, 50.0), (2, 100.0)), sticky=("header", "x-user"))
    for user in ("alice", "bob", "carol"):
        assert len({traffic.choose(route, user) for _ in range(20)}) == 1
    arms = Counter(traffic.choose(route, f"user-{n}") for n in range(2000))
    assert 0.4 < arms[2] / 2000 < 0.6


def test_sticky_value_from_header_or_parameter() -> None:
    by_header = split(((1, 50.0), (2, 100.0)), sticky=("header", "X-User"))
    assert traffic.sticky_value(by_header, [(b"x-user", b"alice")], {}) == "alice"
    assert traffic.sticky_value(by_header, [], {"X-User": "ignored"}) is None
    by_parameter = split(((1, 50.0), (2, 100.0)), sticky=("parameter", "user"))
    assert traffic.sticky_value(by_parameter, [(b"user", b"no")], {"user": 42}) == "42"


def test_compare_reports_max_difference_and_argmax_agreement() -> None:
    live = {"probs": np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=np.float32)}
    shadow = {"probs": np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]], dtype=np.float32)}
    result = traffic.compare(live, shadow)
    assert result["rows"] == 3 and result["agree"] == 2
    assert result["max_abs_diff"] == pytest.approx(0.2, abs=1e-6)
    assert traffic.compare(live, {"probs": np.zeros((2, 2), np.float32)})["max_abs_diff"] == float("inf")


def test_a_shadow_answering_nan_is_as_far_as_can_be_and_agrees_on_nothing() -> None:
    live = {"probs": np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32)}
    shadow = {"probs": np.array([[np.nan, np.nan], [0.2, 0.8]], dtype=np.float32)}
    assert traffic.compare(live, shadow) == {"max_abs_diff": float("inf"), "rows": 2, "agree": 1}
    both = {"probs": np.array([[np.nan, 0.1]], dtype=np.float32)}
    assert traffic.compare(both, {"probs": both["probs"].copy()}) == {"max_abs_diff": 0.0, "rows": 1, "agree": 1}


def test_percentiles_from_the_merged_histogram() -> None:
    counts: Counter[str] = Counter()
    for ms in [1.5] * 98 + [40.0, 40.0]:
        counts[f"t{livestats.bucket(ms)}"] += 1
        counts["c200"] += 1
    counts["c503"] += 2
    summary = livestats.summarize(counts, 10)
    assert summary["requests"] == 102 and summary["errors"] == 2 and summary["rps"] == 10.2
    assert summary["codes"] == {"200": 100, "503": 2}
    total = summary["latency_ms"]["total"]  # percentiles of the synthetic histogram above
    assert 1 <= total["p50"] <= 2
    assert 30 <= total["p99"] <= 50
