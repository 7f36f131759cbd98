"""Hostile stream bindings: a `manage` token of one team cannot make the workers read or write
another team's keys or Paddock's own, cannot point them at a Redis an operator did not list, and
a password in a Redis URL never comes back (answers, messages, the audit log, the console)."""

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings
from rest_framework.test import APIClient

from console.audit import Actor
from console.models import AuditEvent
from registry import services as registry_services
from serving.models import StreamBinding
from tests.conftest import PASSWORD, ready_version

API = "/api/v1/models/iris/streams/"
SECRET = "hunter2-Sup3rSecret"
NOT_LISTED = ("Redis host '10.0.0.1' is not allowed: an operator lists the hosts bindings may read in "
              "PADDOCK_STREAM_REDIS_HOSTS")


def bind(client: APIClient, path: str = API, **body: Any) -> Any:
    return client.post(path, {"name": "clicks", "source": "ml:clicks", **body}, format="json")


def team_prefix_message(key: str) -> str:
    return f"on Paddock's Redis, stream keys must start with 'ml:' (the team's prefix): '{key}' does not"


@pytest.mark.django_db
@pytest.mark.parametrize("keys", [{"source": "other:clicks"}, {"sink": "other:predictions"},
                                  {"dead_letter": "other:dead"}, {"source": "mlx:clicks"}, {"source": "ml"}])
def test_a_team_cannot_bind_keys_under_another_teams_prefix(iris: Any, client_for: Callable[..., APIClient],
                                                            keys: dict[str, str]) -> None:
    refused = bind(client_for("engineer"), **keys)
    assert refused.status_code == 400
    assert refused.json() == {"detail": team_prefix_message(next(iter(keys.values())))}
    assert not StreamBinding.objects.exists()


@pytest.mark.django_db
def test_a_team_cannot_bind_another_teams_model(iris: Any, teams: dict[str, Any], cast: dict[str, Any],
                                                client_for: Callable[..., APIClient]) -> None:
    theirs = registry_services.create_model(actor=Actor(user=cast["outsider"]), name="theirs", team=teams["other"])
    ready_version(theirs, 3)
    refused = bind(client_for("engineer"), "/api/v1/models/theirs/streams/", source="other:clicks")
    assert refused.status_code == 404 and refused.json() == {"detail": "model 'theirs' not found"}
    own = bind(client_for("outsider"), "/api/v1/models/theirs/streams/", source="other:clicks")
    assert own.status_code == 201, own.content  # the same keys are the other team's own to bind


@pytest.mark.django_db
@override_settings(PADDOCK_STREAM_REDIS_HOSTS=["redis.example.com"])
@pytest.mark.parametrize("redis_url", ["", "redis://redis.example.com:6379/0"])
@pytest.mark.parametrize("field", ["source", "sink", "dead_letter"])
def test_paddocks_own_keys_are_refused_on_every_redis(iris: Any, client_for: Callable[..., APIClient],
                                                      redis_url: str, field: str) -> None:
    prefix = settings.PADDOCK_REDIS_PREFIX
    key = f"{prefix}:v1:requests"
    keys = {"source": "ml:clicks", "sink": "ml:clicks:out", "dead_letter": "ml:clicks:dead", field: key}
    refused = bind(client_for("engineer"), redis_url=redis_url, **keys)
    assert refused.status_code == 400
    assert refused.json() == {"detail": f"stream keys must not start with '{prefix}:', where Paddock keeps its own "
                                        f"keys: '{key}' does"}


@pytest.mark.django_db
@pytest.mark.parametrize(("redis_url", "message"), [
    ("redis://10.0.0.1:6379", NOT_LISTED),
    (f"redis://:{SECRET}@10.0.0.1:6379/0", NOT_LISTED),
    (f"rediss://admin:{SECRET}@10.0.0.1", NOT_LISTED),
    ("redis://127.0.0.1:6379/0", "Redis host '127.0.0.1' is not allowed: an operator lists the hosts bindings may "
                                 "read in PADDOCK_STREAM_REDIS_HOSTS"),
    ("unix:///var/run/redis/redis.sock", "'redis_url' must start with redis:// or rediss://"),
    (f"http://:{SECRET}@10.0.0.1/", "'redis_url' must start with redis:// or rediss://"),
    (f"redis://:{SECRET}@10.0.0.1:port/0", "'redis_url' has an invalid port"),
    (f"redis://:{SECRET}@/0", "'redis_url' must name a host: redis://host:6379/0"),
    (f"redis://:{SECRET}@[::1/0", "'redis_url' is not a URL: redis://host:6379/0"),
])
def test_the_workers_are_pointed_only_at_listed_hosts(iris: Any, client_for: Callable[..., APIClient],
                                                      redis_url: str, message: str) -> None:
    refused = bind(client_for("engineer"), redis_url=redis_url)
    assert refused.status_code == 400
    assert refused.json() == {"detail": message}
    assert SECRET not in refused.content.decode()


@pytest.mark.django_db
@override_settings(PADDOCK_STREAM_REDIS_HOSTS=["redis.example.com"])
def test_query_parameters_cannot_turn_a_listed_host_into_another_connection(
        iris: Any, client_for: Callable[..., APIClient]) -> None:
    refused = bind(client_for("engineer"), redis_url="redis://redis.example.com/0?unix_socket_path=/run/paddock.sock")
    assert refused.status_code == 400
    assert refused.json() == {"detail": "'redis_url' takes no query parameters: name the database in its path "
                                        "(redis://host:6379/0)"}


@pytest.mark.django_db
def test_a_listed_host_that_is_paddocks_own_redis_keeps_the_team_prefix(
        iris: Any, client_for: Callable[..., APIClient]) -> None:
    own = settings.REDIS_URL.split("://", 1)[1].split("/", 1)[0]  # host:port of Paddock's Redis
    with override_settings(PADDOCK_STREAM_REDIS_HOSTS=[own.split(":")[0]]):
        refused = bind(client_for("engineer"), redis_url=f"redis://{own}/3", source="clicks")
    assert refused.status_code == 400 and refused.json() == {"detail": team_prefix_message("clicks")}


@pytest.mark.django_db
@override_settings(PADDOCK_STREAM_REDIS_HOSTS=["redis.example.com"])
def test_a_password_in_the_redis_url_never_comes_back(iris: Any, client_for: Callable[..., APIClient]) -> None:
    engineer = client_for("engineer")
    created = bind(engineer, source="clicks", redis_url=f"redis://reader:{SECRET}@redis.example.com:6380/2")
    assert created.status_code == 201, created.content
    assert created.json()["redis"] == "redis://reader:***@redis.example.com:6380/2"
    assert StreamBinding.objects.get().redis_url.endswith(f"{SECRET}@redis.example.com:6380/2")  # the workers' copy
    answers = [created, engineer.get(API), engineer.get(f"{API}clicks/"), engineer.post(f"{API}clicks/pause/"),
               engineer.post(f"{API}clicks/resume/"), bind(engineer, source="clicks",
                                                           redis_url=f"redis://:{SECRET}@redis.example.com")]
    assert answers[-1].status_code == 409
    console = Client()
    assert console.login(username="engineer", password=PASSWORD)
    card = console.get("/models/iris/streams/", HTTP_HX_REQUEST="true").content.decode()
    assert "redis://reader:***@redis.example.com:6380/2" in card
    assert engineer.delete(f"{API}clicks/").status_code == 204
    for answer in answers:
        assert SECRET not in answer.content.decode()
    assert SECRET not in card
    audit = AuditEvent.objects.filter(action__startswith="stream.").order_by("id")
    assert [e.action for e in audit] == ["stream.created", "stream.paused", "stream.resumed", "stream.deleted"]
    for event in audit:
        assert SECRET not in json.dumps([event.before, event.after, event.object_repr])
    assert (audit[0].after or {})["redis"] == "redis://reader:***@redis.example.com:6380/2"


@pytest.mark.django_db
def test_hostile_names_are_refused_not_a_server_error(iris: Any, client_for: Callable[..., APIClient]) -> None:
    engineer = client_for("engineer")
    assert engineer.get(f"{API}%00/").status_code == 404
    assert engineer.post(f"{API}%00/pause/").status_code == 404
    refused = bind(engineer, name="a\x00b")
    assert refused.status_code == 400
    assert bind(engineer, group="g\x00").json() == {"detail": "'group' must not contain spaces or control characters"}
    assert bind(engineer, redis_url="redis://a\x00b").json() == {
        "detail": "'redis_url' must not contain spaces or control characters"}
