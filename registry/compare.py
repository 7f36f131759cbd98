"""Two versions of a model side by side, as the comparison page shows them: signatures with
their differences, artifacts, validation latencies, live figures, the figures kept in Postgres
and shadow agreement wherever one version was mirrored."""

from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.db.models import IntegerField, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.utils import timezone

from registry.models import ModelVersion, RegisteredModel
from serving import live
from serving.models import MetricRollup, Rollout, RolloutStrategy

# The livestats fields summed from the minute rollups: shadow requests, shadow failures, rows
# compared and rows agreeing (serving/livestats.py).
_SHADOW_FIELDS = {"shadow_requests": "sn", "shadow_errors": "se", "shadow_rows": "sr", "shadow_agreeing": "sa"}


def signature_diff(a: ModelVersion, b: ModelVersion) -> list[dict[str, Any]]:
    """One row per input and output name of either version, in a's order then b's new names:
    each side's tensor (None where that version lacks it) and what differs: `only_a`, `only_b`,
    `changed` (datatype or shape, each flagged) or `same`."""
    rows = []
    for kind, side in (("input", "inputs"), ("output", "outputs")):
        left = {tensor["name"]: tensor for tensor in getattr(a, side)}
        right = {tensor["name"]: tensor for tensor in getattr(b, side)}
        for name in [*left, *(name for name in right if name not in left)]:
            ta, tb = left.get(name), right.get(name)
            datatype = ta is not None and tb is not None and ta["datatype"] != tb["datatype"]
            shape = ta is not None and tb is not None and list(ta["shape"]) != list(tb["shape"])
            change = "only_b" if ta is None else "only_a" if tb is None else "changed" if datatype or shape else "same"
            rows.append({"kind": kind, "name": name, "a": ta, "b": tb, "change": change,
                         "datatype_differs": datatype, "shape_differs": shape})
    return rows


def validation_latencies(a: ModelVersion, b: ModelVersion) -> list[dict[str, Any]]:
    """The smoke runs of both validation reports by batch size: each side's median latency (ms)
    and b's as a ratio of a's."""
    runs = [{run["batch_size"]: run["latency_ms"] for run in (v.validation_report or {}).get("runs", [])
             if isinstance(run, dict) and "batch_size" in run and "latency_ms" in run} for v in (a, b)]
    rows = []
    for batch in sorted(set(runs[0]) | set(runs[1])):
        left, right = runs[0].get(batch), runs[1].get(batch)
        ratio = round(right / left, 2) if left and right else None
        rows.append({"batch_size": batch, "a": left, "b": right, "ratio": ratio})
    return rows


def live_figures(model: RegisteredModel, a: ModelVersion, b: ModelVersion) -> dict[str, Any] | None:
    """Each version's summary over the last minute (serving.live, as the model page's charts);
    None while Redis cannot be reached. A version no worker holds has no entry."""
    try:
        figures = live.model_figures(model, 60)
    except redis.RedisError:
        return None
    by_number = {entry["version"]: entry for entry in figures["versions"]}
    return {"a": by_number.get(a.number), "b": by_number.get(b.number)}


def kept_figures(a: ModelVersion, b: ModelVersion) -> dict[str, dict[str, Any]]:
    """Each version's totals over the minute rollups still kept (PADDOCK_ROLLUP_1M_RETENTION_HOURS):
    requests, errors, and, when it was ever mirrored as a shadow, how often it agreed (the share
    of compared rows whose argmax matched the live answer). One query for both."""
    since = timezone.now() - timedelta(hours=settings.PADDOCK_ROLLUP_1M_RETENTION_HOURS)
    sums = {name: Sum(Cast(KT(f"counts__{field}"), IntegerField())) for name, field in _SHADOW_FIELDS.items()}
    rows = {row["version_id"]: row for row in MetricRollup.objects.filter(
        version_id__in=[a.pk, b.pk], resolution=60, start__gte=since).values("version_id").annotate(
        requests_total=Sum("requests"), errors_total=Sum("errors"), **sums)}
    kept = {}
    for side, version in (("a", a), ("b", b)):
        row = rows.get(version.pk, {})
        requests, shadow_rows = row.get("requests_total") or 0, row.get("shadow_rows") or 0
        kept[side] = {
            "requests": requests, "errors": row.get("errors_total") or 0,
            "error_rate": round((row.get("errors_total") or 0) / requests, 5) if requests else None,
            "shadow_requests": row.get("shadow_requests") or 0, "shadow_errors": row.get("shadow_errors") or 0,
            "shadow_agreement": round((row.get("shadow_agreeing") or 0) / shadow_rows, 5) if shadow_rows else None,
        }
    return kept


def shadow_rollouts(model: RegisteredModel, a: ModelVersion, b: ModelVersion) -> list[dict[str, Any]]:
    """The shadow rollouts between these two versions, newest first, with the agreement their
    gates last measured (the candidate mirrored beside the stable version)."""
    rollouts = Rollout.objects.filter(model=model, strategy=RolloutStrategy.SHADOW,
                                      stable_version__in=[a, b], candidate_version__in=[a, b]).exclude(
        stable_version=a, candidate_version=a).exclude(stable_version=b, candidate_version=b).select_related(
        "stable_version", "candidate_version")
    found = []
    for rollout in rollouts[:5]:
        shadow = ((rollout.last_check or {}).get("candidate") or {}).get("shadow") or {}
        found.append({"rollout": rollout, "agreement": shadow.get("agreement"), "requests": shadow.get("requests")})
    return found


def comparison(model: RegisteredModel, a: ModelVersion, b: ModelVersion) -> dict[str, Any]:
    """Everything the comparison page shows of versions a and b."""
    signature = signature_diff(a, b)
    return {
        "a": a, "b": b, "signature": signature,
        "signature_differs": any(row["change"] != "same" for row in signature),
        "latencies": validation_latencies(a, b), "live": live_figures(model, a, b), "kept": kept_figures(a, b),
        "shadow_rollouts": shadow_rollouts(model, a, b),
    }
