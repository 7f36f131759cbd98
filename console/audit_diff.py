"""What an audit event changed, field by field, for people: its `before` and `after` flattened
to dotted keys (`gates.min_requests`) and compared. Pure functions, no Django."""

import json
from dataclasses import dataclass
from typing import Any, Literal

# Characters of a value shown in the table; the whole value stays one click away (<details>).
SHOWN_CHARACTERS = 120
# The key a value that is not an object stands under (a snapshot is normally an object).
WHOLE = "(value)"
_ABSENT: Any = object()

Kind = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class Value:
    """One side of a change as text: `shown` is `full` cut to SHOWN_CHARACTERS (with an ellipsis)."""

    full: str

    @property
    def shown(self) -> str:
        return self.full if not self.truncated else self.full[:SHOWN_CHARACTERS - 1] + "…"

    @property
    def truncated(self) -> bool:
        return len(self.full) > SHOWN_CHARACTERS


@dataclass(frozen=True)
class Change:
    """One field that differs: added (no before), removed (no after) or changed."""

    field: str
    kind: Kind
    before: Value | None
    after: Value | None


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested objects as one level of dotted keys; lists, scalars and empty objects are leaves.
    A value that is not an object (a list, a number) stands under WHOLE."""
    if not isinstance(value, dict):
        return {prefix or WHOLE: value}
    if not value and prefix:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def as_text(value: Any) -> str:
    """A value as people read it: a string as is (the empty one as ""), anything else as compact
    JSON (null, true, [1, 2])."""
    if isinstance(value, str):
        return value or '""'
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def field_changes(before: Any, after: Any) -> list[Change]:
    """The fields whose value differs between `before` and `after` (either may be None: a
    creation or a deletion), in key order. A field present on both sides with equal values is
    left out, so an event that only records `after` lists every field as added."""
    old = flatten(before) if before is not None else {}
    new = flatten(after) if after is not None else {}
    changes = []
    for field in sorted(old.keys() | new.keys()):
        was, now = old.get(field, _ABSENT), new.get(field, _ABSENT)
        if was is _ABSENT:
            changes.append(Change(field, "added", None, Value(as_text(now))))
        elif now is _ABSENT:
            changes.append(Change(field, "removed", Value(as_text(was)), None))
        elif _json(was) != _json(now):  # as JSON: 1 and true, 1 and 1.0, "1" and 1 all differ
            changes.append(Change(field, "changed", Value(as_text(was)), Value(as_text(now))))
    return changes
