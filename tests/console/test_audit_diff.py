"""An audit event's changes, field by field (console.audit_diff): pure functions, no database."""

from console.audit_diff import SHOWN_CHARACTERS, WHOLE, Change, Value, field_changes, flatten


def test_nested_objects_flatten_to_dotted_keys_and_lists_stay_whole() -> None:
    assert flatten({"gates": {"min_requests": 50, "window": {"seconds": 60}}, "steps": [10, 100], "tags": {}}) == {
        "gates.min_requests": 50, "gates.window.seconds": 60, "steps": [10, 100], "tags": {}}
    assert flatten([1, 2]) == {WHOLE: [1, 2]}
    assert flatten({}) == {}


def test_a_change_lists_only_the_fields_that_differ_in_key_order() -> None:
    before = {"name": "iris", "tags": ["tabular"], "gates": {"max_error_rate": 0.01, "confidence": 0.99}}
    after = {"name": "iris", "tags": ["tabular", "v2"], "gates": {"max_error_rate": 0.02, "confidence": 0.99}}
    assert field_changes(before, after) == [
        Change("gates.max_error_rate", "changed", Value("0.01"), Value("0.02")),
        Change("tags", "changed", Value('["tabular"]'), Value('["tabular", "v2"]')),
    ]


def test_added_and_removed_fields_and_whole_creations_and_deletions() -> None:
    assert field_changes({"a": 1, "gone": "x"}, {"a": 1, "new": None}) == [
        Change("gone", "removed", Value("x"), None), Change("new", "added", None, Value("null"))]
    assert field_changes(None, {"name": "iris", "owner": {"id": 3}}) == [
        Change("name", "added", None, Value("iris")), Change("owner.id", "added", None, Value("3"))]
    assert field_changes({"name": "iris"}, None) == [Change("name", "removed", Value("iris"), None)]
    assert field_changes(None, None) == []
    assert field_changes({"description": ""}, {"description": "Flowers"}) == [
        Change("description", "changed", Value('""'), Value("Flowers"))]  # an empty string is seen
    assert field_changes({"a": 1}, {"a": 1}) == []


def test_values_equal_in_python_but_not_in_json_are_changes() -> None:
    assert [c.field for c in field_changes({"a": 1, "b": 1, "c": "1", "d": 1}, {"a": True, "b": 1.0, "c": 1, "d": 1})] \
        == ["a", "b", "c"]


def test_an_object_replaced_by_a_scalar_shows_each_side() -> None:
    assert field_changes({"routes": {"v1": 100}}, {"routes": None}) == [
        Change("routes", "added", None, Value("null")), Change("routes.v1", "removed", Value("100"), None)]


def test_a_long_value_is_cut_for_the_table_and_kept_whole() -> None:
    long = "x" * (SHOWN_CHARACTERS + 30)
    [change] = field_changes({"reason": "short"}, {"reason": long})
    assert change.before is not None and not change.before.truncated and change.before.shown == "short"
    assert change.after is not None and change.after.truncated and change.after.full == long
    assert change.after.shown == "x" * (SHOWN_CHARACTERS - 1) + "…" and len(change.after.shown) == SHOWN_CHARACTERS
    assert not Value("y" * SHOWN_CHARACTERS).truncated
