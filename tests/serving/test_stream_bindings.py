"""Stream bindings through the API and the console: create, list with the workers' figures,
pause, resume, delete, each audited; every refusal with its status and message; who may see and
change them. Real PostgreSQL and Redis (the figures are published the way workers publish them)."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import Client, override_settings
from rest_framework.test import APIClient

from console.audit import Actor
from console.models import AuditEvent
from registry import services as registry_services
from serving.models import StreamBinding
from serving.streams import status
from tests.conftest import PASSWORD

API = "/api/v1/models/iris/streams/"


@pytest.fixture
def conn() -> Iterator[redis.Redis]:
    """Paddock's Redis; the figures of every binding the test made are removed after it."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    for pk in StreamBinding.objects.values_list("pk", flat=True):
        status.forget(client, pk)


def signed_in(who: str) -> Client:
    client = Client()
    assert client.login(username=who, password=PASSWORD)
    return client


def bind(client: APIClient, **body: Any) -> Any:
    return client.post(API, {"name": "clicks", "source": "ml:clicks", **body}, format="json")


def events(prefix: str = "stream.") -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action__startswith=prefix).order_by("id"))


@pytest.mark.django_db
def test_an_engineer_binds_pauses_resumes_and_deletes_a_stream_each_audited(
        iris: Any, client_for: Callable[..., APIClient], conn: redis.Redis,
        django_capture_on_commit_callbacks: Any) -> None:
    engineer = client_for("engineer")
    created = bind(engineer, batch_size=64)
    assert created.status_code == 201, created.content
    body = created.json()
    assert {key: body[key] for key in ("name", "model", "redis", "source", "group", "sink", "dead_letter", "start",
                                       "output_format", "batch_size", "state", "created_by")} == {
        "name": "clicks", "model": "iris", "redis": "", "source": "ml:clicks", "group": "paddock",
        "sink": "ml:clicks:predictions", "dead_letter": "ml:clicks:dead", "start": "0", "output_format": "json",
        "batch_size": 64, "state": "active", "created_by": "engineer"}
    listed = engineer.get(API)
    assert listed.status_code == 200 and [b["name"] for b in listed.json()] == ["clicks"]

    paused = engineer.post(f"{API}clicks/pause/")
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    again = engineer.post(f"{API}clicks/pause/")
    assert again.status_code == 409
    assert again.json() == {"detail": "stream binding 'clicks' of model 'iris' is already paused"}
    resumed = engineer.post(f"{API}clicks/resume/")
    assert resumed.status_code == 200 and resumed.json()["state"] == "active"
    again = engineer.post(f"{API}clicks/resume/")
    assert again.status_code == 409
    assert again.json() == {"detail": "stream binding 'clicks' of model 'iris' is already active"}

    binding_id = StreamBinding.objects.get().pk
    status.publish(conn, binding_id, pending=1, undelivered=0, added={"read": 5})
    with django_capture_on_commit_callbacks(execute=True):  # the figures go once the deletion is committed
        deleted = engineer.delete(f"{API}clicks/")
    assert deleted.status_code == 204
    assert not StreamBinding.objects.exists()
    assert conn.hgetall(status.counts_key(binding_id)) == {} and conn.hget(status.lag_key(), str(binding_id)) is None
    gone = engineer.get(f"{API}clicks/")
    assert gone.status_code == 404 and gone.json() == {"detail": "model 'iris' has no stream binding 'clicks'"}

    audit = events()
    assert [e.action for e in audit] == ["stream.created", "stream.paused", "stream.resumed", "stream.deleted"]
    assert all(e.actor_username == "engineer" and e.object_id == str(binding_id) for e in audit)
    snapshots = [(e.before or {}, e.after or {}) for e in audit]
    assert audit[0].before is None and snapshots[0][1]["source"] == "ml:clicks" and snapshots[0][1]["batch_size"] == 64
    assert (snapshots[1][0]["state"], snapshots[1][1]["state"]) == ("active", "paused")
    assert (snapshots[2][0]["state"], snapshots[2][1]["state"]) == ("paused", "active")
    assert snapshots[3][0]["name"] == "clicks" and audit[3].after is None


@pytest.mark.django_db
def test_the_list_shows_the_figures_the_workers_publish(iris: Any, client_for: Callable[..., APIClient],
                                                         conn: redis.Redis) -> None:
    engineer = client_for("engineer")
    assert bind(engineer).status_code == 201
    binding = StreamBinding.objects.get()
    assert engineer.get(API).json()[0]["figures"] == {"lag": None, "pending": None, "undelivered": None,
                                                      "fresh": False, "read": 0, "predicted": 0, "dead": 0, "rows": 0}
    status.publish(conn, binding.pk, pending=3, undelivered=4,
                   added={"read": 10, "predicted": 9, "dead": 1, "rows": 18})
    figures = engineer.get(API).json()[0]["figures"]
    assert figures == {"lag": 7, "pending": 3, "undelivered": 4, "fresh": True, "read": 10, "predicted": 9,
                       "dead": 1, "rows": 18}
    assert engineer.get(f"{API}clicks/").json()["figures"] == figures
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):  # nothing listens there: Redis is "down"
        down = engineer.get(API)
    assert down.status_code == 200 and down.json()[0]["figures"] is None


REFUSALS = [
    ({"name": "not a slug"}, "'name' must be a slug of at most 60 characters: letters, digits, '-' and '_'"),
    ({"name": "x" * 61}, "'name' must be a slug of at most 60 characters: letters, digits, '-' and '_'"),
    ({"source": ""}, "'source' must not be empty"),
    ({"source": "ml:" + "x" * 198}, "'source' must be at most 200 characters (it has 201)"),
    ({"source": "ml:" + "x" * 190}, "'sink' must be at most 200 characters (it has 205)"),
    ({"source": "ml:my clicks"}, "'source' must not contain spaces or control characters"),
    ({"sink": "ml:out\x00"}, "'sink' must not contain spaces or control characters"),
    ({"dead_letter": "ml:dead\n"}, "'dead_letter' must not contain spaces or control characters"),
    ({"sink": "ml:clicks"}, "'source', 'sink' and 'dead_letter' must be three different streams"),
    ({"sink": "ml:out", "dead_letter": "ml:out"}, "'source', 'sink' and 'dead_letter' must be three different streams"),
    ({"source": "clicks"}, "on Paddock's Redis, stream keys must start with 'ml:' (the team's prefix): "
                           "'clicks' does not"),
    ({"dead_letter": "dead"}, "on Paddock's Redis, stream keys must start with 'ml:' (the team's prefix): "
                              "'dead' does not"),
    ({"group": ""}, "'group' must not be empty"),
    ({"group": "a b"}, "'group' must not contain spaces or control characters"),
    ({"start": "1-0"}, "'start' must be '0' (the whole stream) or '$' (only new messages)"),
    ({"output_format": "csv"}, "'output_format' must be 'json' or 'binary'"),
    ({"batch_size": 0}, "'batch_size' must be a whole number from 1 to 4096"),
    ({"batch_size": 4097}, "'batch_size' must be a whole number from 1 to 4096"),
    ({"batch_size": "64"}, "'batch_size' must be a whole number from 1 to 4096"),
    ({"batch_size": True}, "'batch_size' must be a whole number from 1 to 4096"),
    ({"source": 5}, "'source' must be a string"),
    ({"colour": "red"}, "unknown field 'colour'"),
    ({"redis_url": "http://redis.example.com"}, "'redis_url' must start with redis:// or rediss://"),
    ({"redis_url": "redis://redis.example.com:6379/0"},
     "Redis host 'redis.example.com' is not allowed: an operator lists the hosts bindings may read in "
     "PADDOCK_STREAM_REDIS_HOSTS"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "message"), REFUSALS, ids=[m for _, m in REFUSALS])
def test_every_refusal_says_what_is_wrong(iris: Any, client_for: Callable[..., APIClient], body: dict[str, Any],
                                           message: str) -> None:
    refused = bind(client_for("engineer"), **body)
    assert refused.status_code == 400, refused.content
    assert refused.json() == {"detail": message}
    assert not StreamBinding.objects.exists() and events() == []


@pytest.mark.django_db
def test_the_internal_prefix_is_refused_with_its_own_message(iris: Any, client_for: Callable[..., APIClient]) -> None:
    prefix = settings.PADDOCK_REDIS_PREFIX
    refused = bind(client_for("engineer"), sink=f"{prefix}:v1:requests")
    assert refused.status_code == 400
    assert refused.json() == {"detail": f"stream keys must not start with '{prefix}:', where Paddock keeps its own "
                                        f"keys: '{prefix}:v1:requests' does"}


@pytest.mark.django_db
def test_a_name_is_taken_once_per_model_and_a_model_must_serve_a_version(
        iris: Any, teams: dict[str, Any], cast: dict[str, Any], client_for: Callable[..., APIClient]) -> None:
    engineer = client_for("engineer")
    assert bind(engineer).status_code == 201
    taken = bind(engineer, source="ml:other")
    assert taken.status_code == 409
    assert taken.json() == {"detail": "model 'iris' already has a stream binding named 'clicks'"}
    missing = engineer.post(f"{API}nope/pause/")
    assert missing.status_code == 404 and missing.json() == {"detail": "model 'iris' has no stream binding 'nope'"}
    registry_services.create_model(actor=Actor(user=cast["engineer"]), name="empty", team=teams["ml"])
    idle = engineer.post("/api/v1/models/empty/streams/", {"name": "clicks", "source": "ml:clicks"}, format="json")
    assert idle.status_code == 409
    assert idle.json() == {"detail": "model 'empty' serves no version yet: a stream binding needs a version that "
                                     "validated"}
    not_json = engineer.post(API, {"name": "x", "source": "ml:x"})  # multipart: only JSON is read
    assert not_json.status_code == 415
    assert engineer.post(API, [1, 2], format="json").json() == {"detail": "send a JSON object"}
    assert engineer.post(API, {"source": "ml:x"}, format="json").json() == {"detail": "'name' is required"}


@pytest.mark.django_db
def test_viewers_read_outsiders_see_nothing_and_read_tokens_change_nothing(
        iris: Any, client_for: Callable[..., APIClient]) -> None:
    assert bind(client_for("engineer")).status_code == 201
    viewer = client_for("viewer")
    assert viewer.get(API).status_code == 200 and viewer.get(f"{API}clicks/").status_code == 200
    for response in (bind(viewer, name="mine"), viewer.post(f"{API}clicks/pause/"), viewer.delete(f"{API}clicks/")):
        assert response.status_code == 403
        assert response.json() == {"detail": "the engineer role in team 'ml' is required to change this model"}
    outsider = client_for("outsider")
    for response in (outsider.get(API), outsider.get(f"{API}clicks/"), bind(outsider, name="theirs"),
                     outsider.delete(f"{API}clicks/")):
        assert response.status_code == 404 and response.json() == {"detail": "model 'iris' not found"}
    read_only = client_for("engineer", "read")
    assert read_only.get(API).status_code == 200
    for response in (bind(read_only, name="mine"), read_only.post(f"{API}clicks/pause/"),
                     read_only.delete(f"{API}clicks/")):
        assert response.status_code == 403 and response.json() == {"detail": "token lacks the 'manage' scope"}
    assert StreamBinding.objects.get().state == "active" and [e.action for e in events()] == ["stream.created"]


# -- the console ---------------------------------------------------------------------------------

CARD = "/models/iris/streams/"


@pytest.mark.django_db
def test_the_model_page_loads_the_card_which_polls_its_table(iris: Any, conn: redis.Redis) -> None:
    engineer = signed_in("engineer")
    page = engineer.get("/models/iris/").content.decode()
    assert f'id="stream-bindings" hx-get="{CARD}" hx-trigger="load"' in page
    card = engineer.get(CARD, HTTP_HX_REQUEST="true")
    assert card.status_code == 200
    html = card.content.decode()
    assert "<html" not in html and "No stream bindings yet." in html and 'id="stream-form"' in html
    assert 'hx-trigger="every 2s"' in html and 'hx-select="#stream-table"' in html
    whole = engineer.get(CARD).content.decode()
    assert "<html" in whole and "Stream bindings of" in whole and 'id="stream-table"' in whole
    viewer_card = signed_in("viewer").get(CARD, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="stream-form"' not in viewer_card
    assert signed_in("outsider").get(CARD, HTTP_HX_REQUEST="true").status_code == 404


@pytest.mark.django_db
def test_the_console_form_and_buttons_bind_pause_resume_and_delete(iris: Any, conn: redis.Redis) -> None:
    engineer = signed_in("engineer")
    refused = engineer.post(CARD, {"name": "clicks", "source": "clicks"}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 400
    html = refused.content.decode()
    assert ("on Paddock&#x27;s Redis, stream keys must start with &#x27;ml:&#x27; (the team&#x27;s prefix): "
            "&#x27;clicks&#x27; does not") in html
    assert 'value="clicks"' in html  # the form keeps what was typed
    created = engineer.post(CARD, {"name": "clicks", "source": "ml:clicks", "start": "$", "output_format": "binary",
                                   "batch_size": "32"}, HTTP_HX_REQUEST="true")
    assert created.status_code == 201, created.content.decode()
    binding = StreamBinding.objects.get()
    assert (binding.start, binding.output_format, binding.batch_size, binding.sink) == (
        "$", "binary", 32, "ml:clicks:predictions")
    status.publish(conn, binding.pk, pending=2, undelivered=5, added={"predicted": 40, "dead": 3})
    html = engineer.get(CARD, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="stream-clicks" data-state="active"' in html
    assert '<td data-field="lag">7</td>' in html and '<td data-field="pending">2</td>' in html
    assert '<td data-field="predicted">40</td>' in html and '<td data-field="dead">3</td>' in html
    assert "<code>ml:clicks</code> → <code>ml:clicks:predictions</code>" in html

    paused = engineer.post(f"{CARD}clicks/pause/", HTTP_HX_REQUEST="true")
    assert paused.status_code == 200 and 'data-state="paused"' in paused.content.decode()
    twice = engineer.post(f"{CARD}clicks/pause/", HTTP_HX_REQUEST="true")
    assert twice.status_code == 409
    assert "stream binding &#x27;clicks&#x27; of model &#x27;iris&#x27; is already paused" in twice.content.decode()
    resumed = engineer.post(f"{CARD}clicks/resume/", HTTP_HX_REQUEST="true")
    assert 'data-state="active"' in resumed.content.decode()
    viewer = signed_in("viewer").post(f"{CARD}clicks/delete/", HTTP_HX_REQUEST="true")
    assert viewer.status_code == 403
    assert "the engineer role in team &#x27;ml&#x27; is required to change this model" in viewer.content.decode()
    missing = engineer.post(f"{CARD}nope/pause/", HTTP_HX_REQUEST="true")
    assert missing.status_code == 404
    assert "model &#x27;iris&#x27; has no stream binding &#x27;nope&#x27;" in missing.content.decode()
    assert engineer.post(f"{CARD}clicks/explode/", HTTP_HX_REQUEST="true").status_code == 404
    deleted = engineer.post(f"{CARD}clicks/delete/", HTTP_HX_REQUEST="true")
    assert deleted.status_code == 200 and "No stream bindings yet." in deleted.content.decode()
    assert [e.action for e in events()] == ["stream.created", "stream.paused", "stream.resumed", "stream.deleted"]
    assert events()[0].actor_username == "engineer"
    plain = engineer.post(CARD, {"name": "again", "source": "ml:again"})  # without htmx: back to the page
    assert plain.status_code == 302 and plain["Location"] == CARD
