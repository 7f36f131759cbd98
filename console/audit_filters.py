"""The audit log's filters, one function for the console page, its CSV and JSON exports and the
API (`GET /api/v1/audit/`): who acted, what action, which object, which team, and when.

A team is not a column of the log (events are plain columns, written once, and a team is not
known for every event): "team ml" means the events whose object belongs to team ml now, found
through the rows that still exist (`TEAM_OWNED`). Events of a row deleted since (a deleted
model's versions), and of objects outside any team (tokens, users, sign-ins), match no team;
filter those by object or action instead."""

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from urllib.parse import urlencode

from django.apps import apps
from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast

from console.api import parse_instant
from console.errors import InvalidInput
from console.models import AuditEvent, Team

# An object's type (its model's label, as record_event writes it) and the path from that model
# to the team that owns it.
TEAM_OWNED: dict[str, str] = {
    "console.team": "pk",
    "console.membership": "team",
    "registry.registeredmodel": "team",
    "registry.modelversion": "model__team",
    "registry.alias": "model__team",
    "serving.deployment": "model__team",
    "serving.rollout": "model__team",
    "serving.batchjob": "model__team",
    "serving.jobschedule": "model__team",
    "serving.streambinding": "model__team",
    "webhooks.webhook": "team",
}


@dataclass(frozen=True)
class AuditFilters:
    """The filters as sent (text, '' when absent), for the form to show them again."""

    actor: str = ""
    action: str = ""
    object_type: str = ""
    object_id: str = ""
    team: str = ""
    since: str = ""
    until: str = ""

    @classmethod
    def of(cls, params: Mapping[str, str]) -> "AuditFilters":
        """Read from a query string; InvalidInput for a NUL character (no PostgreSQL text holds one)."""
        values = {}
        for field in fields(cls):
            value = (params.get(field.name) or "").strip()
            if "\x00" in value:
                raise InvalidInput(f"'{field.name}' must not contain NUL characters")
            values[field.name] = value
        return cls(**values)

    def query_string(self) -> str:
        """The filters that are set, as a query string (for the export links)."""
        return urlencode({name: value for name, value in vars(self).items() if value})


def _instant(raw: str, name: str) -> datetime | None:
    try:
        return parse_instant(raw)
    except ValueError:
        raise InvalidInput(f"'{name}' is not an ISO 8601 date-time: '{raw}'") from None


def team_events(team: Team) -> Q:
    """The events whose object belongs to `team` now: one indexed lookup per object type."""
    condition = Q(pk__in=[])
    for label, path in TEAM_OWNED.items():
        app_label, model_name = label.split(".")
        try:
            owned = apps.get_model(app_label, model_name)
        except LookupError:  # an app this deployment does not install
            continue
        ids = owned._default_manager.filter(**{path: team.pk}).annotate(
            audit_id=Cast("pk", output_field=CharField())).values("audit_id")
        condition |= Q(object_type=label, object_id__in=ids)
    return condition


def filter_events(params: Mapping[str, str]) -> tuple[QuerySet[AuditEvent], AuditFilters]:
    """The events matching `params`, newest first, and the filters read from them.

    - actor: the username, exactly;
    - action: exactly, or every action under a prefix that ends in "." (`rollout.`) or "*" (`user.login*`);
    - object_type and object_id: exactly (`serving.rollout`, `7`);
    - team: a team's name (see the module's note);
    - since (inclusive) and until (exclusive): ISO 8601, a time without an offset read as UTC.
    InvalidInput names the filter for a value that cannot be read."""
    chosen = AuditFilters.of(params)
    events = AuditEvent.objects.all()
    if chosen.actor:
        events = events.filter(actor_username=chosen.actor)
    if chosen.action.endswith(("*", ".")):
        events = events.filter(action__startswith=chosen.action.rstrip("*"))
    elif chosen.action:
        events = events.filter(action=chosen.action)
    if chosen.object_type:
        events = events.filter(object_type=chosen.object_type)
    if chosen.object_id:
        events = events.filter(object_id=chosen.object_id)
    if chosen.team:
        team = Team.objects.filter(name=chosen.team).first()
        if team is None:
            raise InvalidInput(f"'team' names no team: '{chosen.team}'")
        events = events.filter(team_events(team))
    if since := _instant(chosen.since, "since"):
        events = events.filter(created_at__gte=since)
    if until := _instant(chosen.until, "until"):
        events = events.filter(created_at__lt=until)
    return events, chosen
