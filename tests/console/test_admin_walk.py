"""Every model registered in the Django admin, walked as a superuser would: the change form
posted as the browser renders it, the delete confirmation, and the bulk "delete selected".
Each write leaves exactly one audit event per row changed or removed; read-only admins refuse."""

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.db import models, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from console import services as console_services
from console.audit import Actor
from console.models import AuditEvent, Membership, Team
from registry import services as registry_services
from registry.models import Alias, ModelVersion, RegisteredModel
from serving import rollouts
from serving.models import Deployment, MetricRollup, Rollout, RolloutEvent
from serving.services import configure_deployment
from tests.conftest import ready_version
from webhooks import services as webhook_services
from webhooks.models import Delivery, Webhook

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("tests")


class _RenderedForm(HTMLParser):
    """What a browser sends for the admin's form as rendered: checked boxes, selected options,
    textareas, every other input; the inlines' empty template (`__prefix__`) left out."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id, self.inside = form_id, False
        self.data: dict[str, list[str]] = defaultdict(list)
        self.select: tuple[str, bool, list[tuple[str, bool]]] | None = None
        self.textarea: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        name = attr.get("name") or ""
        if tag == "form":
            self.inside = attr.get("id") == self.form_id
        elif not self.inside:
            return
        elif tag == "input" and name:
            kind = attr.get("type") or "text"
            if kind not in ("submit", "button", "reset", "file") and (kind not in ("checkbox", "radio")
                                                                       or "checked" in attr):
                self.data[name].append(attr.get("value") or ("on" if kind == "checkbox" else ""))
        elif tag == "select" and name:
            self.select = (name, "multiple" in attr, [])
        elif tag == "option" and self.select is not None:
            self.select[2].append((attr.get("value") or "", "selected" in attr))
        elif tag == "textarea" and name:
            self.textarea = (name, [])

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            self.textarea[1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select" and self.select is not None:
            name, multiple, options = self.select
            chosen = [value for value, selected in options if selected]
            self.data[name] += chosen or ([] if multiple or not options else [options[0][0]])
            self.select = None
        elif tag == "textarea" and self.textarea is not None:
            text = "".join(self.textarea[1])
            self.data[self.textarea[0]].append(text.removeprefix("\n"))  # HTML drops a leading newline
            self.textarea = None


def rendered_form(page: Any, model: type[models.Model]) -> dict[str, Any]:
    parser = _RenderedForm(f"{model._meta.model_name}_form")
    parser.feed(page.content.decode())
    return {name: values[0] if len(values) == 1 else values for name, values in parser.data.items()
            if "__prefix__" not in name}


def admin_url(model: type[models.Model], page: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{page}", args=args)


def actions_since(mark: int) -> Counter[str]:
    return Counter(AuditEvent.objects.filter(id__gt=mark).values_list("action", flat=True))


def last_event_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def form_errors(response: Any) -> str:
    context = response.context or {}
    form = context.get("adminform")
    return str(form.form.errors) if form else response.content.decode()[-2000:]


# -- the rows each admin is walked with ------------------------------------------------------

def make_user(cast: dict[str, Any], teams: dict[str, Team], n: int) -> Any:
    """A person in two teams who owns a model (its owner is cleared when they go)."""
    user = type(cast["admin"]).objects.create_user(f"leaver{n}", password="x-correct-horse")
    Membership.objects.create(team=teams["ml"], user=user, role="engineer")
    Membership.objects.create(team=teams["other"], user=user, role="viewer")
    registry_services.create_model(actor=Actor(user=user), name=f"owned{n}", team=teams["ml"])
    return user


def make_group(cast: dict[str, Any], teams: dict[str, Team], n: int) -> Group:
    group = Group.objects.create(name=f"reviewers{n}")
    group.permissions.add(Permission.objects.get(codename="view_auditevent"))
    cast["viewer"].groups.add(group)
    return group


def make_team(cast: dict[str, Any], teams: dict[str, Team], n: int) -> Team:
    team = console_services.create_team(actor=SYSTEM, name=f"vision{n}", description="Images")
    Membership.objects.create(team=team, user=cast["engineer"], role="engineer")
    Membership.objects.create(team=team, user=cast["viewer"], role="viewer")
    return team


def make_model(cast: dict[str, Any], teams: dict[str, Team], n: int) -> RegisteredModel:
    """A model with everything that hangs off one: two ready versions (one with figures), a
    champion, a deployment, a rollout rolled back and one under way."""
    actor = Actor(user=cast["engineer"])
    model = registry_services.create_model(actor=actor, name=f"churn{n}", team=teams["ml"], tags=["tabular"])
    stable, candidate = ready_version(model, 1), ready_version(model, 2)
    registry_services.set_alias(actor=actor, model=model, name="champion", version=stable)
    configure_deployment(actor=actor, model=model, changes={"active_version": 1})
    first = rollouts.start_rollout(actor=actor, model=model, candidate=2, strategy="canary")
    rollouts.control(actor=actor, rollout=first, action="rollback")
    rollouts.start_rollout(actor=actor, model=model, candidate=2, strategy="shadow")
    MetricRollup.objects.create(version=candidate, resolution=10, start=timezone.now(), requests=3)
    return model


def make_deployment(cast: dict[str, Any], teams: dict[str, Team], n: int) -> Deployment:
    actor = Actor(user=cast["engineer"])
    model = registry_services.create_model(actor=actor, name=f"served{n}", team=teams["ml"])
    ready_version(model, 1)
    return configure_deployment(actor=actor, model=model, changes={"active_version": 1})


def make_token(cast: dict[str, Any], teams: dict[str, Team], n: int) -> Any:
    token, _ = console_services.create_token(actor=SYSTEM, user=cast["engineer"], name=f"t{n}", scopes=["read"])
    return token


def make_event(cast: dict[str, Any], teams: dict[str, Team], n: int) -> AuditEvent:
    make_token(cast, teams, n)
    return AuditEvent.objects.latest("id")


def make_version(cast: dict[str, Any], teams: dict[str, Team], n: int) -> ModelVersion:
    return ModelVersion.objects.get(model=make_deployment(cast, teams, n).model)


def make_alias(cast: dict[str, Any], teams: dict[str, Team], n: int) -> Any:
    version = make_version(cast, teams, n)
    return registry_services.set_alias(actor=SYSTEM, model=version.model, name="champion", version=version)


def make_rollout(cast: dict[str, Any], teams: dict[str, Team], n: int) -> Rollout:
    return make_model(cast, teams, n).rollouts.latest("id")


def make_webhook(cast: dict[str, Any], teams: dict[str, Team], n: int) -> Webhook:
    webhook, _ = webhook_services.create_webhook(actor=SYSTEM, team=teams["ml"], url=f"https://93.184.216.34/{n}",
                                                 events=["alias.moved"])
    return webhook


def make_delivery(cast: dict[str, Any], teams: dict[str, Team], n: int) -> Delivery:
    webhook = make_webhook(cast, teams, n)
    with transaction.atomic():
        sent = webhook_services.emit(event="alias.moved", team_id=webhook.team_id, data={"model": "churn"})
    return next(delivery for delivery in sent if delivery.webhook_id == webhook.pk)


@dataclass
class Case:
    """How one admin is walked: a row to walk with, the fields the change form edits, and the
    events a change and a delete of one row write (none for a read-only admin)."""

    make: Callable[[dict[str, Any], dict[str, Team], int], Any]
    edit: dict[str, str] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def read_only(self) -> bool:
        return not self.changed


CASES = {
    "auth.user": Case(make_user, {"first_name": "Lea"}, {"user.update": 1},
                      {"membership.delete": 2, "registeredmodel.update": 1, "user.delete": 1}),
    "auth.group": Case(make_group, {"name": "auditors"}, {"group.update": 1}, {"group.delete": 1}),
    "console.team": Case(make_team, {"description": "Pictures"}, {"team.update": 1},
                         {"membership.delete": 2, "team.delete": 1}),
    "console.apitoken": Case(make_token),
    "console.auditevent": Case(make_event),
    "registry.registeredmodel": Case(make_model, {"description": "Retired"}, {"model.update": 1},
                                     {"rollout.delete": 2, "deployment.delete": 1, "alias.delete": 1,
                                      "version.delete": 2, "model.delete": 1}),
    "registry.modelversion": Case(make_version),
    "registry.alias": Case(make_alias),
    "serving.deployment": Case(make_deployment, {"max_queue_depth": "77"}, {"deployment.configure": 1},
                               {"deployment.delete": 1}),
    "serving.rollout": Case(make_rollout),
    "webhooks.webhook": Case(make_webhook),
    "webhooks.delivery": Case(make_delivery),
}
REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label_lower)


def case_of(model: type[models.Model]) -> Case:
    label = model._meta.label_lower
    assert label in CASES, f"{label} is registered in the admin: add a Case saying how it is audited"
    return CASES[label]


@pytest.fixture
def admin_browser(cast: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(cast["admin"])
    return client


def ids(model: type[models.Model]) -> str:
    return model._meta.label_lower


# -- the walk --------------------------------------------------------------------------------

@pytest.mark.parametrize("model", REGISTERED, ids=ids)
def test_a_change_posted_in_the_admin_writes_one_event_per_row_changed(
        model: type[models.Model], admin_browser: Client, cast: dict[str, Any], teams: dict[str, Team]) -> None:
    case = case_of(model)
    row = case.make(cast, teams, 0)
    url = admin_url(model, "change", row.pk)
    page = admin_browser.get(url)
    assert page.status_code == 200
    mark = last_event_id()
    if case.read_only:
        assert admin_browser.post(url, rendered_form(page, model)).status_code == 403
        assert actions_since(mark) == Counter()
        return
    response = admin_browser.post(url, {**rendered_form(page, model), **case.edit})
    assert response.status_code == 302, form_errors(response)
    assert actions_since(mark) == Counter(case.changed)
    row.refresh_from_db()
    assert all(str(getattr(row, name)) == value for name, value in case.edit.items())


@pytest.mark.parametrize("model", REGISTERED, ids=ids)
def test_a_delete_confirmed_in_the_admin_writes_one_event_per_row_removed(
        model: type[models.Model], admin_browser: Client, cast: dict[str, Any], teams: dict[str, Team]) -> None:
    case = case_of(model)
    row = case.make(cast, teams, 0)
    url = admin_url(model, "delete", row.pk)
    mark = last_event_id()
    if case.read_only:
        assert admin_browser.get(url).status_code == 403
        assert admin_browser.post(url, {"post": "yes"}).status_code == 403
        assert model._default_manager.filter(pk=row.pk).exists() and actions_since(mark) == Counter()
        return
    confirm = admin_browser.get(url)
    assert confirm.status_code == 200 and not confirm.context["protected"] and not confirm.context["perms_lacking"]
    response = admin_browser.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not model._default_manager.filter(pk=row.pk).exists()
    assert actions_since(mark) == Counter(case.deleted)


@pytest.mark.parametrize("model", REGISTERED, ids=ids)
def test_the_bulk_delete_writes_one_event_per_row_removed(
        model: type[models.Model], admin_browser: Client, cast: dict[str, Any], teams: dict[str, Team]) -> None:
    case = case_of(model)
    rows = [case.make(cast, teams, n) for n in (1, 2)]
    url = admin_url(model, "changelist")
    mark = last_event_id()
    response = admin_browser.post(url, {"action": "delete_selected", "_selected_action": [r.pk for r in rows],
                                        "post": "yes"})
    remaining = model._default_manager.filter(pk__in=[r.pk for r in rows]).count()
    if case.read_only:  # the action is not offered: the list comes back, nothing deleted
        assert response.status_code == 200 and remaining == 2 and actions_since(mark) == Counter()
        return
    assert response.status_code == 302 and remaining == 0
    assert actions_since(mark) == Counter({action: 2 * count for action, count in case.deleted.items()})


# -- what the walk relies on -----------------------------------------------------------------

def test_a_model_deleted_in_the_admin_takes_everything_that_hangs_off_it(
        admin_browser: Client, cast: dict[str, Any], teams: dict[str, Team],
        django_capture_on_commit_callbacks: Any) -> None:
    model = make_model(cast, teams, 0)
    versions = list(model.versions.all())
    confirm = admin_browser.get(f"/admin/registry/registeredmodel/{model.pk}/delete/")
    assert dict(confirm.context["model_count"]) == {"registered models": 1, "rollouts": 2, "deployments": 1,
                                                    str(Alias._meta.verbose_name_plural): 1, "model versions": 2}
    mark = last_event_id()
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_browser.post(f"/admin/registry/registeredmodel/{model.pk}/delete/",
                                  {"post": "yes"}).status_code == 302
    assert not ModelVersion.objects.filter(model_id=model.pk).exists()
    assert not Rollout.objects.filter(model_id=model.pk).exists() and not RolloutEvent.objects.exists()
    assert not Deployment.objects.filter(model_id=model.pk).exists() and not MetricRollup.objects.exists()
    events = list(AuditEvent.objects.filter(id__gt=mark).order_by("id"))
    assert [e.action for e in events] == ["rollout.delete", "rollout.delete", "deployment.delete", "alias.delete",
                                          "version.delete", "version.delete", "model.delete"]
    assert {e.actor_username for e in events} == {"admin"}
    by_version = {e.before["number"]: e.before for e in events if e.action == "version.delete" and e.before}
    assert by_version[2]["rollups"] == 1 and by_version[1]["rollups"] == 0
    assert all(not version.artifact.storage.exists(version.artifact.name) for version in versions)


def test_a_bulk_delete_that_fails_part_way_leaves_every_row_and_no_event(
        admin_browser: Client, cast: dict[str, Any], teams: dict[str, Team], monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = make_team(cast, teams, 1), make_team(cast, teams, 2)
    delete_team = console_services.delete_team

    def fail_on_the_second(*, actor: Actor, team: Team) -> None:
        if team.pk == second.pk:
            raise RuntimeError("the database went away")
        delete_team(actor=actor, team=team)

    monkeypatch.setattr(console_services, "delete_team", fail_on_the_second)
    mark = last_event_id()
    with pytest.raises(RuntimeError, match="the database went away"):
        admin_browser.post("/admin/console/team/", {"action": "delete_selected", "post": "yes",
                                                    "_selected_action": [first.pk, second.pk]})
    assert Team.objects.filter(pk__in=[first.pk, second.pk]).count() == 2
    assert actions_since(mark) == Counter()


def test_a_deployment_a_rollout_steers_cannot_be_deleted_in_the_admin(
        admin_browser: Client, cast: dict[str, Any], teams: dict[str, Team]) -> None:
    model = make_model(cast, teams, 0)  # its shadow rollout is live
    deployment = Deployment.objects.get(model=model)
    mark = last_event_id()
    assert admin_browser.post(f"/admin/serving/deployment/{deployment.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Deployment.objects.filter(pk=deployment.pk).exists() and actions_since(mark) == Counter()
