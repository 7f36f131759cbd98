"""The Grafana dashboard in docs/ queries only metrics Paddock exports."""

import json
import re

import pytest
from django.conf import settings
from prometheus_client import generate_latest

from serving import metrics
from tests.conftest import ROOT


@pytest.mark.django_db
def test_every_metric_the_dashboard_queries_is_exported() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-paddock.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"paddock_[a-z_]+", target["expr"])}
    registry = metrics.CollectorRegistry()
    for collector in list(metrics.REGISTRY._collector_to_names):
        registry.register(collector)
    registry.register(metrics.WorkerCollector(settings.REDIS_URL))
    page = generate_latest(registry).decode()
    exported = set(re.findall(r"^# TYPE (paddock_[a-z_]+) (\w+)", page, re.M))
    names = set()
    for name, kind in exported:
        names.add(name)
        if kind == "histogram":
            names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
        if kind == "counter":
            names.add(f"{name}_total")
    assert queried and queried <= names, queried - names
