"""Registry writes made by people, workers and commands each leave their audit event, in the
transaction of the change: deleting a model (and all that hangs off it), claiming a validation,
the demo model's team."""

from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from console.audit import Actor
from console.models import AuditEvent, Team
from registry import services
from registry.models import ModelVersion, RegisteredModel
from serving import rollouts
from serving.models import Deployment
from tests.conftest import ready_version

pytestmark = pytest.mark.django_db

WORKER = Actor.system("worker")


def last_event_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def folder_of(model: RegisteredModel) -> Path:
    return Path(settings.MEDIA_ROOT) / "models" / model.name


def test_deleting_a_model_writes_one_event_per_row_and_removes_its_files_after_commit(
        iris: Any, cast: dict[str, Any], django_capture_on_commit_callbacks: Any) -> None:
    actor = Actor(user=cast["admin"])
    alias = services.set_alias(actor=actor, model=iris, name="champion", version=iris.versions.get(number=1))
    rollout = rollouts.start_rollout(actor=actor, model=iris, candidate=2, strategy="canary")
    assert folder_of(iris).is_dir()
    mark = last_event_id()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.delete_model(actor=actor, model=iris)
        assert folder_of(iris).is_dir()  # the files go only once the delete has committed
    assert len(callbacks) == 1
    assert not folder_of(iris).exists()
    assert not RegisteredModel.objects.filter(pk=iris.pk).exists()
    assert not ModelVersion.objects.filter(model_id=iris.pk).exists()
    events = list(AuditEvent.objects.filter(id__gt=mark))
    assert sorted(e.action for e in events) == ["alias.delete", "deployment.delete", "model.delete",
                                                "rollout.delete", "version.delete", "version.delete"]
    before = {(e.action, e.object_id): e.before for e in events if e.before is not None}
    assert before["rollout.delete", str(rollout.pk)]["timeline_events"] == 2  # start, warming step
    assert before["model.delete", str(iris.pk)] == {"name": "iris", "description": "", "team": "ml",
                                                   "owner": "engineer", "tags": []}
    assert before["alias.delete", str(alias.pk)] == {"alias": "champion", "version": 1}
    versions = {b["number"]: b for (action, _), b in before.items() if action == "version.delete"}
    assert versions[1]["rollups"] == 0 and versions[2]["status"] == "ready"
    assert {e.actor_username for e in events} == {"admin"}


def test_a_model_delete_that_rolls_back_keeps_its_rows_files_and_no_events(
        iris: Any, cast: dict[str, Any], django_capture_on_commit_callbacks: Any) -> None:
    mark = last_event_id()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError, match="changed my mind"), transaction.atomic():
            services.delete_model(actor=Actor(user=cast["admin"]), model=iris)
            raise RuntimeError("changed my mind")
    assert callbacks == [] and folder_of(iris).is_dir()
    assert RegisteredModel.objects.filter(pk=iris.pk).exists() and iris.versions.count() == 2
    assert Deployment.objects.filter(model=iris).exists()
    assert not AuditEvent.objects.filter(id__gt=mark).exists()


def test_claiming_a_validation_writes_one_event_and_a_lost_claim_none(iris: Any) -> None:
    version = ready_version(iris, 3)
    ModelVersion.objects.filter(pk=version.pk).update(status="pending")
    mark = last_event_id()
    assert services.claim_validation(actor=WORKER, version_id=version.pk) is True
    assert services.claim_validation(actor=WORKER, version_id=version.pk) is False  # someone has it
    event = AuditEvent.objects.get(id__gt=mark)
    assert event.action == "version.validation_started" and event.actor_username == "worker"
    assert event.object_id == str(version.pk) and event.before == {"status": "pending"}
    assert event.after is not None and event.after["status"] == "validating"


def test_taking_over_a_stale_validation_is_recorded_too(iris: Any) -> None:
    version = ready_version(iris, 3)
    long_ago = timezone.now() - timedelta(hours=1)
    ModelVersion.objects.filter(pk=version.pk).update(status="validating", validation_started_at=long_ago)
    mark = last_event_id()
    recent = timezone.now() - timedelta(hours=2)
    assert services.claim_validation(actor=WORKER, version_id=version.pk, stale_before=recent) is False
    assert services.claim_validation(actor=WORKER, version_id=version.pk, stale_before=timezone.now()) is True
    event = AuditEvent.objects.get(id__gt=mark)
    assert event.action == "version.validation_restarted" and event.before == {"status": "validating"}


def test_the_demo_models_team_is_created_once_and_audited(db: Any) -> None:
    call_command("register_demo_model", stdout=StringIO())
    call_command("register_demo_model", stdout=StringIO())
    event = AuditEvent.objects.get(action="team.create")
    assert event.actor_username == "register_demo_model"
    assert event.after == {"name": "demo", "description": "Demo models"}
    assert Team.objects.get(name="demo").models.count() == 1
