"""Which version answers a request when a deployment splits traffic, and how a shadow
version's answer compares with the live one. Pure functions: the data plane calls them."""

import hashlib
import random
from typing import Any

import numpy as np

from serving.v2.routes import ModelRoute


def sticky_point(model: str, key: str) -> float:
    """A caller's fixed place in [0, 100): the same key always lands on the same arm, and the
    model name is salted in so that one caller is not in the first arm of every model."""
    digest = hashlib.blake2b(f"{model}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100


def choose(route: ModelRoute, sticky_value: str | None = None) -> int | None:
    """The version number for one request: by the caller's sticky key when the deployment has
    an A/B rule and the request carries it, else at random by weight; `active` when unsplit."""
    if not route.arms:
        return route.active
    point = sticky_point(route.name, sticky_value) if sticky_value else random.random() * 100
    for number, cumulative in route.arms:
        if point < cumulative:
            return number
    return route.arms[-1][0]


def sticky_value(route: ModelRoute, headers: list[tuple[bytes, bytes]], parameters: dict[str, Any]) -> str | None:
    """The A/B key of a request (header or parameter named by the deployment), or None."""
    if route.sticky is None:
        return None
    kind, name = route.sticky
    if kind == "header":
        wanted = name.lower().encode("latin-1")
        return next((value.decode("latin-1") for key, value in headers if key == wanted), None)
    value = parameters.get(name)
    return None if value is None else str(value)


def mirrored(route: ModelRoute) -> bool:
    """Whether this request is mirrored to the shadow version (its percent of requests)."""
    return route.shadow is not None and random.random() * 100 < route.shadow[1]


def compare(live: dict[str, np.ndarray], shadow: dict[str, np.ndarray]) -> dict[str, Any]:
    """How far the shadow's outputs are from the live ones: the largest absolute difference over
    every numeric output, and for classifier-shaped outputs ([rows, classes], classes > 1) how
    many rows pick the same class."""
    max_diff = 0.0
    rows = agree = 0
    for name, expected in live.items():
        got = shadow.get(name)
        if got is None or got.shape != expected.shape or expected.dtype.kind not in "fiub":
            max_diff = float("inf")
            continue
        live_values, shadow_values = expected.astype(np.float64), got.astype(np.float64)
        if expected.size:
            # NaN where the other has a number is as far apart as values get; NaN in both agrees.
            # (Plain max() would drop NaN: a shadow answering NaN would compare as identical.)
            differ = np.abs(live_values - shadow_values)
            differ[np.isnan(live_values) != np.isnan(shadow_values)] = np.inf
            differ[np.isnan(live_values) & np.isnan(shadow_values)] = 0.0
            max_diff = max(max_diff, float(np.max(differ)))
        if expected.ndim == 2 and expected.shape[1] > 1:
            rows += expected.shape[0]
            same = np.argmax(expected, axis=1) == np.argmax(got, axis=1)
            broken = np.isnan(shadow_values).any(axis=1) & ~np.isnan(live_values).any(axis=1)
            agree += int(np.sum(same & ~broken))
    return {"max_abs_diff": max_diff, "rows": rows, "agree": agree}
