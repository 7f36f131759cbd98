"""How the cells of a batch-job file become one array per signature input, for files.py's readers:
`table_to_arrays` for columns (csv's as text, Parquet's typed or lists), `rows_to_array` for JSON
values (jsonl, csv cells of JSON arrays). numpy and Arrow convert whole columns; only once a vectorised
check has found a bad value is it looked for, to name its row, column and value in the `JobFileError`."""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from registry.datatypes import V2_TO_NUMPY

NO_ROWS = "the file has no rows"
BOOL_PROBLEM = "is not a BOOL (true, false, 1 or 0)"


class JobFileError(Exception):
    """A batch-job file that does not fit the model's signature; `message` is the 400's exact text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Spec:
    """One signature entry as a file sees it: its datatype and the shape of one row."""

    name: str
    datatype: str
    row_shape: tuple[int, ...]  # the signature's shape without its first (row) axis; -1: any length

    @property
    def dtype(self) -> np.dtype:
        return V2_TO_NUMPY[self.datatype]

    @property
    def static(self) -> bool:
        return all(length >= 0 for length in self.row_shape)

    @property
    def one_element(self) -> bool:
        """Rows of one value: a plain column in csv and Parquet, a bare scalar allowed in jsonl."""
        return self.static and math.prod(self.row_shape) == 1

    def fits(self, shape: tuple[int, ...]) -> bool:
        """Whether a row of `shape` is what the signature asks (-1 takes any length)."""
        if self.one_element:
            return math.prod(shape) == 1
        return len(shape) == len(self.row_shape) and all(
            want < 0 or want == length for want, length in zip(self.row_shape, shape, strict=True))


def specs_of(signature: list[dict[str, Any]]) -> list[Spec]:
    """The signature's entries with the row axis dropped (the first axis is the row axis even for a
    fixed-batch model: files are read row by row, whoever runs them batches them)."""
    return [Spec(entry["name"], entry["datatype"], tuple(-1 if length is None or length < 0 else int(length)
                                                         for length in (entry.get("shape") or [])[1:]))
            for entry in signature]


@dataclass(frozen=True)
class Place:
    """How messages name a row ("row 3", "line 7") and a cell ("row 3, column 'x.2'") of one input."""

    row_word: str  # "row" (csv, Parquet, npy, npz) or "line" (jsonl)
    column: str  # "column 'x.2'", "input 'x'", "array 'x'"
    line_numbers: list[int] | None = None  # the file line of each row, where blank lines were skipped

    def row(self, index: int) -> str:
        return f"{self.row_word} {self.line_numbers[index] if self.line_numbers else index + 1}"

    def cell(self, index: int, element: tuple[int, ...] = ()) -> str:
        return f"{self.row(index)}, {self.column}" + (f" {list(element)}" if element else "")

    def locate(self, flat_index: int, row_shape: tuple[int, ...]) -> str:
        """The cell of the `flat_index`th value of rows of `row_shape` (its element, for several)."""
        size = math.prod(row_shape)
        row, offset = divmod(flat_index, max(size, 1))
        return self.cell(row, tuple(int(i) for i in np.unravel_index(offset, row_shape)) if size > 1 else ())


def _shape_error(spec: Spec, place: Place, index: int, shape: tuple[int, ...] | None,
                 first: tuple[int, ...] | None = None) -> JobFileError:
    """Why a row of `shape` (None: ragged) is refused: unlike the signature, or unlike the first row."""
    if shape is None:
        return JobFileError(f"{place.row(index)}: input '{spec.name}' is ragged (its nested lists differ in length)")
    wanted = (f"the signature wants {list(spec.row_shape)}" if first is None or not spec.fits(shape)
              else f"{place.row(0)} has {list(first)}: all rows of an input share one shape")
    return JobFileError(f"{place.row(index)}: input '{spec.name}' has shape {list(shape)}, {wanted}")


def _first(mask: np.ndarray) -> int | None:
    return int(np.argmax(mask)) if mask.any() else None


def _first_null(cells: pa.Array) -> int:
    return int(np.argmax(cells.is_null().to_numpy(zero_copy_only=False)))


def convert_numbers(values: np.ndarray, datatype: str) -> tuple[np.ndarray, int | None, str]:
    """`values` (bool, integer or float) cast to `datatype`, and the flat index of the first that does not
    fit (None: all do) with why. Only floats round; fractions, values out of range, bools are refused."""
    target, kind, flat = V2_TO_NUMPY[datatype], values.dtype.kind, values.reshape(-1)
    everything = np.ones(flat.shape, bool)
    if target.kind == "b":
        bad = (flat != 0) & (flat != 1) if kind in "iu" else ~everything if kind == "b" else everything  # even 1.0
        return values.astype(bool), _first(bad), BOOL_PROBLEM
    if kind == "b":
        return values, _first(everything), f"is not a {datatype} number"
    if target.kind == "f":
        with np.errstate(over="ignore"):
            out = values.astype(target)
        return out, _first(np.isinf(out.reshape(-1)) & np.isfinite(flat)), f"is out of range for {datatype}"
    info = np.iinfo(target)
    if kind == "f":
        with np.errstate(invalid="ignore"):
            fraction = _first(~np.isfinite(flat) | (flat != np.trunc(flat)))
            # info.max as a float rounds up to the power of two that is itself out of range
            outside = _first((flat < info.min) | (flat >= math.ldexp(1, info.bits - (info.kind == "i"))))
        if fraction is not None and (outside is None or fraction <= outside):
            return values, fraction, f"is not a whole number ({datatype})"
    else:  # integers: compare only against the bounds the source type can pass
        source = np.iinfo(values.dtype)
        low = flat < info.min if source.min < info.min else ~everything
        outside = _first(low | (flat > info.max) if source.max > info.max else low)
    if outside is not None:
        return values, outside, f"is out of range for {datatype}"
    return values.astype(target), None, ""


def _shown(value: Any) -> str:
    """A typed value as JSON writes it (1.5, true, "abc"); nan and inf as Parquet and npy hold them."""
    return str(value) if isinstance(value, float) and not math.isfinite(value) else orjson.dumps(value).decode()


def checked_numbers(values: np.ndarray, spec: Spec, place: Place, row_shape: tuple[int, ...]) -> np.ndarray:
    """Typed values, rows of `row_shape` in order, cast to `spec`, or the error naming the first misfit."""
    converted, bad, problem = convert_numbers(values, spec.datatype)
    if bad is not None:
        raise JobFileError(f"{place.locate(bad, row_shape)}: {_shown(values.reshape(-1)[bad].item())} {problem}")
    return converted


def _cast_prefix(cells: pa.Array, to: pa.DataType) -> tuple[np.ndarray, int | None]:
    """`cells` (text) cast by Arrow, and the index of the first that does not parse: Arrow says only
    that one failed, so a binary search over prefixes finds which, in ~log2(n) vectorised casts."""
    try:
        return cells.cast(to).to_numpy(zero_copy_only=False), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        good, bad = 0, len(cells)  # cells[:good] parse, cells[:bad] do not
        while bad - good > 1:
            middle = (good + bad) // 2
            try:
                cells.slice(0, middle).cast(to)
                good = middle
            except pa.ArrowInvalid:
                bad = middle
        return cells.slice(0, good).cast(to).to_numpy(zero_copy_only=False), good


def _parse_text(cells: pa.Array, spec: Spec, place: Place, row_shape: tuple[int, ...]) -> np.ndarray:
    """Text cells (csv's, a Parquet string column) as `spec`'s values."""
    if spec.datatype == "BYTES":
        return cells.cast(pa.binary()).to_numpy(zero_copy_only=False)  # the cell's UTF-8 bytes

    def refuse(index: int, problem: str) -> JobFileError:
        text, where = cells[index].as_py(), place.locate(index, row_shape)
        return JobFileError(f"{where} is empty" if text == "" else f"{where}: '{text}' {problem}")

    trimmed = pc.utf8_trim_whitespace(cells)
    if spec.datatype == "BOOL":
        parsed, bad = _cast_prefix(trimmed, pa.bool_())
        if bad is not None:
            raise refuse(bad, BOOL_PROBLEM)
        return parsed
    if spec.dtype.kind in "iu":  # integers parse exactly as integers; as floats only if a cell is one ("3.0")
        for wide in (pa.int64(), pa.uint64()) if spec.datatype == "UINT64" else (pa.int64(),):
            whole, bad = _cast_prefix(trimmed, wide)
            if bad is None:
                converted, bad, problem = convert_numbers(whole, spec.datatype)
                if bad is not None:
                    raise refuse(bad, problem)
                return converted
    parsed, unparsed = _cast_prefix(trimmed, pa.float64())
    converted, bad, problem = convert_numbers(parsed, spec.datatype)  # only the cells before `unparsed`
    if bad is not None:
        raise refuse(bad, problem)
    if unparsed is not None:
        raise refuse(unparsed, f"is not a {spec.datatype} number")
    return converted


def column_to_array(cells: pa.Array, spec: Spec, place: Place, row_shape: tuple[int, ...] = ()) -> np.ndarray:
    """Flat Arrow values (a column's, or a list column's leaves, rows of `row_shape`) as `spec`'s dtype."""
    if cells.null_count:
        raise JobFileError(f"{place.locate(_first_null(cells), row_shape)} is empty")
    kind = cells.type
    if pa.types.is_dictionary(kind):  # pandas' categoricals
        cells, kind = cells.dictionary_decode(), kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _parse_text(cells, spec, place, row_shape)
    if spec.datatype == "BYTES" and (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        return cells.to_numpy(zero_copy_only=False)
    if spec.datatype != "BYTES" and (pa.types.is_boolean(kind) or pa.types.is_integer(kind)
                                     or pa.types.is_floating(kind)):
        return checked_numbers(cells.to_numpy(zero_copy_only=False), spec, place, row_shape)
    raise JobFileError(f"{place.column} holds {kind} values, the signature wants {spec.datatype}")


def is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _list_column_to_array(column: pa.Array, spec: Spec, place: Place) -> np.ndarray:
    """A Parquet list column (nested past one axis) as (rows, *row shape). Each level's list lengths come
    from its offsets and must be equal: no row is visited in Python unless one is wrong."""
    lengths: list[int] = []
    values = column
    while is_list(values.type):
        per_row, level = math.prod(lengths), len(lengths)  # lists of this level in one row; its axis
        if values.null_count:
            row = _first_null(values) // per_row
            raise JobFileError(f"{place.cell(row)} is empty" if not lengths else f"{place.cell(row)} holds a null list")
        counts = pc.list_value_length(values).to_numpy(zero_copy_only=False)
        fixed = spec.row_shape[level] if level < len(spec.row_shape) else -1
        wanted = fixed if fixed >= 0 else int(counts[0]) if len(counts) else 0  # a free axis: as in the first row
        uneven = _first(counts != wanted)
        if uneven is not None:
            row = uneven // per_row
            raise _shape_error(spec, place, row, _shape_of(column[row].as_py()), _shape_of(column[0].as_py()))
        lengths.append(int(wanted))
        values = values.flatten()
    row_shape = tuple(lengths)
    if not spec.fits(row_shape):
        raise _shape_error(spec, place, 0, row_shape)
    flat = column_to_array(values, spec, place, row_shape)
    return flat.reshape(len(column), *(spec.row_shape if spec.one_element else row_shape))


def _shape_of(value: Any) -> tuple[int, ...] | None:
    """The shape of a nested list, or None when it is ragged."""
    if not isinstance(value, list):
        return ()
    inner = [_shape_of(item) for item in value] or [()]
    if inner[0] is None or any(shape != inner[0] for shape in inner):
        return None
    return (len(value), *inner[0])


def _kind_problem(value: Any, datatype: str) -> str | None:
    """Why a JSON value cannot be a `datatype` element whatever its size (ranges come later), or None."""
    if datatype == "BYTES":
        return None if type(value) is str else "is not a string (BYTES)"
    if datatype == "BOOL":
        return None if type(value) is bool or (type(value) is int and value in (0, 1)) else BOOL_PROBLEM
    if type(value) is float or (type(value) is int and -(2**63) <= value < 2**64):
        return None  # bool is no number here, though Python counts it as one
    if type(value) is int and V2_TO_NUMPY[datatype].kind == "f" and abs(value) < 2**1024:
        return None  # an integer past 64 bits is still a float
    return f"is out of range for {datatype}" if type(value) is int else f"is not a {datatype} number"


def _whole(values: list[Any], spec: Spec, checked: bool) -> np.ndarray | None:
    """All rows as one array in one numpy call, or None when numpy cannot build one that fits."""
    float_target = spec.dtype.kind == "f" and checked  # every value is a number: none is text numpy would parse
    try:
        array = np.array(values, dtype=object if spec.datatype == "BYTES" else np.float64 if float_target else None)
    except (ValueError, TypeError, OverflowError):  # ragged, or a number too large for float64
        return None
    if not spec.fits(array.shape[1:]):
        return None
    if spec.datatype == "BYTES":
        if not np.frompyfunc(lambda value: type(value) is str, 1, 1)(array).all():
            return None
        array = np.frompyfunc(str.encode, 1, 1)(array)  # the text's UTF-8
    elif array.dtype.kind not in ("biu" if spec.datatype == "BOOL" else "iuf"):
        return None
    return array.reshape(len(values), *(spec.row_shape if spec.one_element else array.shape[1:]))


def _walk(values: list[Any], spec: Spec, place: Place) -> tuple[int, JobFileError] | None:
    """Row by row, the first row of the wrong shape or holding a value of the wrong kind, and why."""
    first: tuple[int, ...] | None = None
    for index, value in enumerate(values):
        shape = _shape_of(value)
        if shape is None or not spec.fits(shape) or (first is not None and shape != first):
            return index, _shape_error(spec, place, index, shape, first)
        first = shape
        for offset, leaf in enumerate(np.array(value, dtype=object).reshape(-1)):
            problem = _kind_problem(leaf, spec.datatype)
            if problem is not None:
                element = tuple(int(i) for i in np.unravel_index(offset, shape)) if math.prod(shape) > 1 else ()
                return index, JobFileError(f"{place.cell(index, element)}: {_shown(leaf)} {problem}")
    return None


def _unwrapped(value: Any) -> Any:
    while type(value) is list and len(value) == 1:
        value = value[0]
    return value


def rows_to_array(values: list[Any], spec: Spec, place: Place, strict: bool) -> np.ndarray:
    """Rows given as JSON values (nested lists; any nesting of one value for a one-element row) as
    one array (rows, *row shape). numpy builds it in one call; the rows are walked one by one only to
    name the first at fault when it cannot, or when `strict` (the text holds true or false, which
    numpy would quietly count as 1 and 0 among numbers)."""
    if spec.one_element:
        values = [_unwrapped(value) for value in values]
    array = None if strict else _whole(values, spec, checked=False)
    if array is None:
        found = _walk(values, spec, place)
        if found is not None:
            index, error = found
            if index:  # the rows before it may hold an earlier error: a fraction, a value out of range
                rows_to_array(values[:index], spec, place, strict=False)
            raise error
        array = _whole(values, spec, checked=True)
        if array is None:  # say, -1 and 2**63 for a UINT64: numpy has no one integer type for both
            raise JobFileError(f"input '{spec.name}': its values do not fit one {spec.datatype} array")
    return array if spec.datatype == "BYTES" else checked_numbers(array, spec, place, array.shape[1:])


def _from_flattened(table: pa.Table, spec: Spec, columns: dict[int, str]) -> np.ndarray:
    """An input given as one column per element, `x.0`, `x.1`, ... in C order."""
    if not spec.static and len(spec.row_shape) != 1:
        raise JobFileError(f"input '{spec.name}' has rows of shape {list(spec.row_shape)}, more than one free "
                           f"axis: give it as one column '{spec.name}' of nested lists")
    gap = next(index for index in range(len(columns) + 1) if index not in columns)
    if gap != len(columns):
        raise JobFileError(f"input '{spec.name}' has column '{spec.name}.{max(columns)}' but no '{spec.name}.{gap}'")
    wanted = math.prod(spec.row_shape) if spec.static else len(columns)
    if len(columns) != wanted:
        raise JobFileError(f"input '{spec.name}' has {len(columns)} columns ('{spec.name}.0' to "
                           f"'{columns[len(columns) - 1]}'), the signature wants {wanted} "
                           f"(rows of shape {list(spec.row_shape)})")
    parts = [column_to_array(table.column(column).combine_chunks(), spec, Place("row", f"column '{column}'"))
             for _, column in sorted(columns.items())]
    return np.stack(parts, axis=1).reshape(table.num_rows, *(spec.row_shape if spec.static else (wanted,)))


def _from_column(cells: pa.Array, spec: Spec) -> np.ndarray:
    """An input given as one column: plain values, a list column, or JSON arrays as text."""
    place = Place("row", f"column '{spec.name}'")
    if is_list(cells.type):
        return _list_column_to_array(cells, spec, place)
    if spec.one_element:
        return column_to_array(cells, spec, place).reshape(len(cells), *spec.row_shape)
    if not (pa.types.is_string(cells.type) or pa.types.is_large_string(cells.type)):
        raise JobFileError(f"column '{spec.name}' holds one {cells.type} value a row, the signature wants rows of "
                           f"shape {list(spec.row_shape)}: give a list column or flattened columns")
    if cells.null_count:
        raise JobFileError(f"{place.cell(_first_null(cells))} is empty")
    values = []
    for index, text in enumerate(cells.to_pylist()):
        try:
            values.append(orjson.loads(text))
        except orjson.JSONDecodeError:
            raise JobFileError(f"{place.cell(index)}: '{text}' is not valid JSON") from None
    return rows_to_array(values, spec, place, strict=pc.any(pc.match_substring_regex(cells, "true|false")).as_py())


def table_to_arrays(table: pa.Table, specs: list[Spec]) -> dict[str, np.ndarray]:
    """Columns (csv's as text, or Parquet's) as one array per input: a column named as the input (plain,
    lists, JSON arrays), or its flattened `name.0`, `name.1`, ...; every column must belong to one."""
    if table.num_rows == 0:
        raise JobFileError(NO_ROWS)
    names = table.column_names
    twice = next((name for index, name in enumerate(names) if name in names[:index]), None)
    if twice is not None:
        raise JobFileError(f"the header names column '{twice}' twice")
    given: dict[str, str | dict[int, str]] = {}
    for spec in specs:
        prefix = f"{spec.name}."  # flattened columns by index; `x.01` is none of them
        flattened = {int(name[len(prefix):]): name for name in names if name.startswith(prefix)
                     and name[len(prefix):].isascii() and name[len(prefix):].isdigit()
                     and str(int(name[len(prefix):])) == name[len(prefix):]}
        if spec.name in names and flattened:
            raise JobFileError(f"input '{spec.name}' has both column '{spec.name}' and flattened columns "
                               f"'{spec.name}.0', ...: give one or the other")
        if spec.name not in names and not flattened:
            either = "" if spec.one_element else f" (or flattened columns '{spec.name}.0', '{spec.name}.1', ...)"
            raise JobFileError(f"missing column '{spec.name}'{either}")
        given[spec.name] = spec.name if spec.name in names else flattened
    taken = {name for columns in given.values() for name in ([columns] if isinstance(columns, str)
                                                             else columns.values())}
    unknown = [name for name in names if name not in taken]
    if unknown:
        raise JobFileError(f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
                           f"the model's inputs are {', '.join(spec.name for spec in specs)}")
    return {spec.name: _from_column(table.column(columns).combine_chunks(), spec) if isinstance(columns, str)
            else _from_flattened(table, spec, columns) for spec, columns in zip(specs, given.values(), strict=True)}
