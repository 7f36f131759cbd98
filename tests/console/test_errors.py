"""The one error table (console/errors.py): every kind has one class and one row, and a kind
sent over the wire comes back as its class."""

import pytest

from console import errors
from serving.v2 import wire


def all_error_classes() -> list[type[errors.PaddockError]]:
    found, pending = [], [errors.PaddockError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_class_names_a_kind_of_the_table() -> None:
    for cls in all_error_classes():
        assert cls.kind in errors.KINDS, cls


def test_every_kind_of_the_table_has_exactly_one_class() -> None:
    direct = [cls for cls in errors.PaddockError.__subclasses__()]
    assert sorted(cls.kind for cls in direct) == sorted(errors.KINDS)


@pytest.mark.parametrize("kind", sorted(errors.KINDS))
def test_a_kind_sent_over_the_wire_comes_back_as_its_class_with_its_status(kind: str) -> None:
    error = errors.error_of(kind, "the message")
    assert error.kind == kind
    assert error.message == "the message"
    assert error.http_status == errors.KINDS[kind].status
    assert error.row.websocket_close == 4000 + errors.KINDS[kind].status


def test_an_unknown_kind_is_an_inference_failure() -> None:
    error = errors.error_of("no-such-kind", "boom")
    assert isinstance(error, errors.InferenceError) and error.http_status == 500


def test_only_refusals_worth_retrying_carry_retry_after() -> None:
    assert {kind for kind, row in errors.KINDS.items() if row.headers()} == {
        "queue_full", "too_many_requests", "not_ready", "unavailable"}
    assert errors.QueueFull("x").row.headers() == [(b"retry-after", b"1")]
    assert errors.InvalidInput("x").row.headers() == []


def test_the_statuses_are_the_ones_clients_rely_on() -> None:
    statuses = {cls.__name__: cls("x").http_status for cls in errors.PaddockError.__subclasses__()}
    assert statuses == {
        "InvalidInput": 400, "Unauthenticated": 401, "Forbidden": 403, "NotFound": 404, "MethodNotAllowed": 405,
        "Conflict": 409, "PayloadTooLarge": 413, "QueueFull": 429, "TooManyRequests": 429, "InferenceError": 500,
        "InternalError": 500,
        "ModelNotReady": 503, "ServiceUnavailable": 503, "DeadlineExceeded": 504, "InsufficientStorage": 507,
    }


def test_lua_is_written_with_the_wire_schemas_names() -> None:
    assert wire.lua("{['${RID}'] = 1, ['${KIND}'] = '${X}'}", X="queue_full") == "{['r'] = 1, ['k'] = 'queue_full'}"
    with pytest.raises(KeyError):
        wire.lua("${NOT_IN_THE_SCHEMA}")


def test_a_workers_error_reply_carries_a_kind_and_no_status() -> None:
    reply = wire.reply(rid=7, kind=errors.DeadlineExceeded.kind, error="late")
    assert reply[wire.KIND] == "deadline" and reply[wire.ERROR] == "late"
    assert 504 not in reply.values()
