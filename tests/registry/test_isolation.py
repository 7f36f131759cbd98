"""Validation's isolation at unit level: the attempts each claim counts (a validation whose worker
keeps dying ends `failed` after PADDOCK_VALIDATION_MAX_ATTEMPTS), and the reason each way a
validation child can end maps to. The real child processes are in tests/integration/test_validation.py."""

import signal
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from console.audit import Actor
from console.models import AuditEvent
from registry import services
from registry.isolation import Exit, Limits, Outcome, outcome_of
from registry.models import ModelVersion
from tests.conftest import ready_version

WORKER = Actor.system("worker")
LIMITS = Limits(memory_bytes=2 << 30, cpu_seconds=30, wall_seconds=60)
GAVE_UP = "validation did not finish after 3 attempts (the worker died or was stopped each time)"


def interrupted(version: ModelVersion) -> None:
    """As beat finds a validation whose worker died: still `validating`, started long ago."""
    ModelVersion.objects.filter(pk=version.pk).update(validation_started_at=timezone.now() - timedelta(hours=1))


@pytest.mark.django_db
def test_each_claim_counts_an_attempt_and_a_fourth_ends_the_version_failed(iris: Any) -> None:
    version = ready_version(iris, 3)
    ModelVersion.objects.filter(pk=version.pk).update(status="pending")
    assert services.claim_validation(actor=WORKER, version_id=version.pk) is True
    for attempt in (2, 3):
        interrupted(version)
        assert services.claim_validation(actor=WORKER, version_id=version.pk, stale_before=timezone.now()) is True
        version.refresh_from_db()
        assert (version.status, version.validation_attempts) == ("validating", attempt)
        event = AuditEvent.objects.filter(action="version.validation_restarted").latest("id")
        assert event.after is not None and event.after["attempt"] == attempt
    interrupted(version)
    assert services.claim_validation(actor=WORKER, version_id=version.pk, stale_before=timezone.now()) is False
    version.refresh_from_db()
    assert (version.status, version.status_reason, version.validation_attempts) == ("failed", GAVE_UP, 3)
    assert version.validated_at is not None
    event = AuditEvent.objects.latest("id")
    assert (event.action, event.actor_username, event.object_id) == ("version.validation_failed", "worker",
                                                                     str(version.pk))
    assert event.before == {"status": "validating"}
    assert event.after == {"status": "failed", "reason": GAVE_UP, "provider": None}
    # Done is done: a later re-queue neither claims it nor writes another event.
    assert services.claim_validation(actor=WORKER, version_id=version.pk, stale_before=timezone.now()) is False
    assert AuditEvent.objects.latest("id").pk == event.pk


@pytest.mark.django_db
def test_a_running_validation_is_neither_retaken_nor_failed_for_its_attempts(iris: Any) -> None:
    version = ready_version(iris, 3)
    ModelVersion.objects.filter(pk=version.pk).update(status="validating", validation_attempts=3,
                                                      validation_started_at=timezone.now())
    long_ago = timezone.now() - timedelta(hours=1)
    assert services.claim_validation(actor=WORKER, version_id=version.pk, stale_before=long_ago) is False
    version.refresh_from_db()
    assert (version.status, version.status_reason) == ("validating", "")


def test_the_worker_killing_a_child_for_time_or_memory_says_which() -> None:
    assert outcome_of(Exit(-signal.SIGKILL, None, 2.0, killed_for="wall"), LIMITS) == Outcome(
        None, "validation took longer than 60 s")
    assert outcome_of(Exit(-signal.SIGKILL, None, 2.0, killed_for="memory"), LIMITS) == Outcome(
        None, "validation exceeded 2 GiB of memory")


def test_the_cpu_limit_is_named_whether_the_kernel_sent_sigxcpu_or_then_sigkill() -> None:
    assert outcome_of(Exit(-signal.SIGXCPU, None, 30.1), LIMITS).error == "validation exceeded 30 s of CPU time"
    assert outcome_of(Exit(-signal.SIGKILL, None, 32.0), LIMITS).error == "validation exceeded 30 s of CPU time"


def test_a_kill_nobody_in_paddock_sent_is_put_down_to_memory_as_likely_not_certain() -> None:
    assert outcome_of(Exit(-signal.SIGKILL, None, 3.0), LIMITS).error == (
        "validation was killed (signal SIGKILL), most likely for lack of memory")


def test_a_crash_by_signal_names_the_signal() -> None:
    assert outcome_of(Exit(-signal.SIGSEGV, None, 1.0), LIMITS) == Outcome(
        None, "validation crashed the runtime (signal SIGSEGV)")
    assert outcome_of(Exit(-signal.SIGABRT, None, 1.0, "terminate called after throwing std::bad_alloc"),
                      LIMITS) == Outcome(None, "validation exceeded 2 GiB of memory")


def test_a_child_that_exits_without_a_result_reports_its_last_words() -> None:
    assert outcome_of(Exit(1, None, 0.5, "Traceback ...\nImportError: no numpy\n"), LIMITS) == Outcome(
        None, "validation crashed the runtime (exit status 1): ImportError: no numpy")
    assert outcome_of(Exit(1, None, 0.5, "Traceback ...\nMemoryError\n"), LIMITS).error == (
        "validation exceeded 2 GiB of memory")


def test_what_the_child_wrote_is_believed_even_if_it_crashed_after_writing() -> None:
    report = {"runtime": "onnxruntime", "runs": []}
    assert outcome_of(Exit(-signal.SIGSEGV, {"report": report}, 1.0), LIMITS) == Outcome(report)
    assert outcome_of(Exit(0, {"error": "onnx runtime could not load the artifact: x"}, 1.0), LIMITS) == Outcome(
        None, "onnx runtime could not load the artifact: x")
    assert outcome_of(Exit(0, {"error": "Failed to allocate", "out_of_memory": True}, 1.0), LIMITS) == Outcome(
        None, "validation exceeded 2 GiB of memory")


def test_the_memory_limit_reads_as_people_write_it() -> None:
    assert Limits(512 << 20, 1, 1).memory_reason() == "validation exceeded 512 MiB of memory"
    assert Limits(3 << 30, 1, 1).memory_text() == "3 GiB"
    assert Limits(1000, 1, 1).memory_text() == "1000 bytes"
