"""Batch-job files read against a model's signature and results written back, in five formats
(npy, npz, parquet, csv, jsonl; docs/jobs.md has the column mapping of each). Pure functions over
paths and file objects: no Django. How cells become arrays, and the errors naming the cell at
fault, live in files_columns.py.

Reading takes the whole file (one array per input, rows first); writing streams: `chunks()` yields
the results a batch at a time, and no format holds more than one batch in memory."""

import io
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from registry.datatypes import V2_TO_NUMPY
from serving.jobs.files_columns import (
    NO_ROWS,
    JobFileError,
    Place,
    Spec,
    checked_numbers,
    is_list,
    rows_to_array,
    specs_of,
    table_to_arrays,
)

__all__ = ["FORMATS", "JobFileError", "format_of", "output_format_for", "read_inputs", "write_outputs"]

FORMATS: tuple[str, ...] = ("npy", "npz", "parquet", "csv", "jsonl")
_EXTENSIONS = {".npy": "npy", ".npz": "npz", ".parquet": "parquet", ".pq": "parquet", ".csv": "csv",
               ".jsonl": "jsonl", ".ndjson": "jsonl"}
_PANDAS_INDEX = re.compile(r"__index_level_\d+__")  # what pandas' to_parquet adds for a non-default index
_ARROW_TYPES = {datatype: pa.binary() if datatype == "BYTES" else pa.from_numpy_dtype(dtype)
                for datatype, dtype in V2_TO_NUMPY.items()}
Chunks = Callable[[], Iterator[dict[str, np.ndarray]]]


def _known(fmt: str, side: str) -> str:
    if fmt.lower() not in FORMATS:
        raise JobFileError(f"unknown {side} format '{fmt}': use one of {', '.join(FORMATS)}")
    return fmt.lower()


def format_of(filename: str, declared: str | None = None) -> str:
    """The input format: `declared` (any case) when given, else the file's extension."""
    if declared:
        return _known(declared, "input")
    fmt = _EXTENSIONS.get(Path(filename).suffix.lower())
    if fmt is None:
        raise JobFileError(f"cannot tell the format of '{filename}' from its extension: name it .npy, .npz, "
                           f".parquet, .csv or .jsonl, or declare one of {', '.join(FORMATS)}")
    return fmt


def output_format_for(input_fmt: str, outputs: list[dict[str, Any]], requested: str | None) -> str:
    """The results' format: `requested`, else the input's (npz instead of npy for several outputs)."""
    fmt = _known(requested, "output") if requested else _known(input_fmt, "input")
    if fmt == "npy" and len(outputs) != 1:
        if not requested:
            return "npz"
        raise _npy_holds_one(len(outputs), "outputs")
    return fmt


def _npy_holds_one(count: int, what: str) -> JobFileError:
    return JobFileError(f"npy holds one array; this model has {count} {what}: use npz, parquet, csv or jsonl")


def read_inputs(path: Path, fmt: str, inputs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The whole file as one array per signature input: rows first, the signature's dtype, the same
    number of rows (at least one) in each."""
    readers = {"npy": _read_npy, "npz": _read_npz, "parquet": _read_parquet, "csv": _read_csv, "jsonl": _read_jsonl}
    arrays = readers[_known(fmt, "input")](Path(path), specs_of(inputs))
    counts = {name: len(array) for name, array in arrays.items()}
    if len(set(counts.values())) > 1:
        (first, rows), *others = counts.items()
        name, other = next((name, count) for name, count in others if count != rows)
        raise JobFileError(f"array '{name}' has {other} rows, array '{first}' has {rows}: "
                           "every input needs the same number of rows")
    return arrays


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _array_to_input(array: np.ndarray, spec: Spec) -> np.ndarray:
    """An npy or npz array checked against its input and cast to the signature's dtype."""
    what = f"array '{spec.name}'"
    if array.ndim == 0:
        raise JobFileError(f"{what} is a scalar: it needs a first axis of rows")
    if not spec.fits(array.shape[1:]):
        raise JobFileError(f"{what} has rows of shape {list(array.shape[1:])}, "
                           f"the signature wants {list(spec.row_shape)}")
    if len(array) == 0:
        raise JobFileError(NO_ROWS)
    rows = array.reshape(len(array), *spec.row_shape) if spec.one_element else array
    kind = array.dtype.kind
    if spec.datatype == "BYTES":
        if kind not in "SU":
            raise JobFileError(f"{what} has dtype {array.dtype}, the signature wants BYTES (a bytes or str array)")
        return (np.char.encode(rows, "utf-8") if kind == "U" else rows).astype(object)
    if kind not in "biuf":
        raise JobFileError(f"{what} has dtype {array.dtype}, the signature wants {spec.datatype}")
    if rows.dtype == spec.dtype:
        return rows  # nothing to check or copy: an npy stays a (copy-on-write) memory map
    return checked_numbers(rows, spec, Place("row", what), rows.shape[1:])


def _pickled(spec: Spec) -> JobFileError:
    return JobFileError(f"array '{spec.name}' holds Python objects (a pickled object array), which Paddock does not "
                        "load: save a numeric or string array")


def _read_npy(path: Path, specs: list[Spec]) -> dict[str, np.ndarray]:
    if len(specs) != 1:
        raise _npy_holds_one(len(specs), "inputs")
    (spec,) = specs
    try:
        with path.open("rb") as file:  # the header first: an object array is refused before any loading
            version = np.lib.format.read_magic(file)
            shape, _, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)(file)
        if dtype.hasobject:
            raise _pickled(spec)
        # mmap (copy-on-write) keeps a large file out of memory until it is used; numpy cannot map 0 bytes
        array = np.load(path, mmap_mode="c" if np.prod(shape) else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise JobFileError(f"not a valid npy file: {_first_line(error)}") from None
    return {spec.name: _array_to_input(array, spec)}


def _read_npz(path: Path, specs: list[Spec]) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):  # else np.load tries it as an npy, then as a pickle
        raise JobFileError("not a valid npz file: it is not a zip archive (as np.savez writes)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise JobFileError(f"not a valid npz file: {_first_line(error)}") from None
    with archive:
        missing = next((spec.name for spec in specs if spec.name not in archive.files), None)
        if missing is not None:
            raise JobFileError(f"missing array '{missing}'")
        unknown = [name for name in archive.files if name not in {spec.name for spec in specs}]
        if unknown:
            raise JobFileError(f"unknown array{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
                               f"the model's inputs are {', '.join(spec.name for spec in specs)}")
        arrays = {}
        for spec in specs:
            try:
                array = archive[spec.name]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
                raise (_pickled(spec) if "allow_pickle" in str(error) else
                       JobFileError(f"not a valid npz file: array '{spec.name}': {_first_line(error)}")) from None
            arrays[spec.name] = _array_to_input(array, spec)
    return arrays


def _read_csv(path: Path, specs: list[Spec]) -> dict[str, np.ndarray]:
    try:
        # every column as text, so that a bad cell is found and named by files_columns, not by Arrow
        with pacsv.open_csv(path) as reader:
            names = reader.schema.names
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names}, strings_can_be_null=False))
    except pa.ArrowInvalid as error:
        if str(error).startswith("Empty CSV file"):
            raise JobFileError(NO_ROWS) from None
        raise JobFileError(f"not a valid CSV file: {_first_line(error)}") from None
    return table_to_arrays(table, specs)


def _read_parquet(path: Path, specs: list[Spec]) -> dict[str, np.ndarray]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        # Arrow's message begins with the server's path of the file: not the client's business
        reason = re.sub(r"^Could not open Parquet input source '[^']*': ", "", _first_line(error))
        raise JobFileError(f"not a valid Parquet file: {reason}") from None
    return table_to_arrays(table.drop_columns([n for n in table.column_names if _PANDAS_INDEX.fullmatch(n)]), specs)


def _read_jsonl(path: Path, specs: list[Spec]) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    names = [spec.name for spec in specs]
    wanted = set(names)
    columns: dict[str, list[Any]] = {name: [] for name in names}
    appends = [(name, columns[name].append) for name in names]
    numbers: list[int] = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise JobFileError(f"line {number} is not valid JSON: {error.msg} at column {error.colno}") from None
        if type(row) is not dict:
            raise JobFileError(f"line {number} is not a JSON object")
        if row.keys() != wanted:
            missing = [name for name in names if name not in row]
            if missing:
                raise JobFileError(f"line {number}: input '{missing[0]}' is missing")
            unknown = [key for key in row if key not in wanted]
            raise JobFileError(f"line {number}: unknown input{'s' if len(unknown) > 1 else ''} "
                               f"{', '.join(map(repr, unknown))}: the model's inputs are {', '.join(names)}")
        for name, append in appends:
            append(row[name])
        numbers.append(number)
    if not numbers:
        raise JobFileError(NO_ROWS)
    strict = b"true" in data or b"false" in data
    lines = None if numbers[-1] == len(numbers) else numbers  # blank lines skipped: name rows by their line
    return {spec.name: rows_to_array(columns[spec.name], spec, Place("line", f"input '{spec.name}'", lines), strict)
            for spec in specs}


def write_outputs(destination: BinaryIO, fmt: str, outputs: list[dict[str, Any]], total_rows: int,
                  chunks: Chunks) -> None:
    """Stream the results into `destination`: only its `write` is called (no format seeks, nor closes it).
    `chunks()` yields the outputs (rows first) a batch at a time, `total_rows` rows in all; npz calls
    it once per output, npy and npz once more for a BYTES output (to size its strings)."""
    writers = {"npy": _write_npy, "npz": _write_npz, "parquet": _write_parquet, "csv": _write_csv,
               "jsonl": _write_jsonl}
    writers[_known(fmt, "output")](cast(BinaryIO, _WriteOnly(destination)), specs_of(outputs), total_rows, chunks)


class _WriteOnly(io.RawIOBase):
    """`destination` as the full file object pyarrow and zipfile ask for; closing it leaves it open."""

    def __init__(self, destination: BinaryIO) -> None:
        super().__init__()
        self.destination = destination

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.destination.write(data)
        return memoryview(data).nbytes


def _as_bytes(array: np.ndarray) -> np.ndarray:
    return np.frompyfunc(lambda value: value if isinstance(value, bytes) else str(value).encode(), 1, 1)(array)


def _as_text(array: np.ndarray) -> np.ndarray:
    # CSV and JSON hold text: bytes that are not UTF-8 come out with U+FFFD, as in v2 JSON responses
    return np.frompyfunc(lambda value: value.decode(errors="replace"), 1, 1)(array)


def _batches(chunks: Chunks, specs: list[Spec], total_rows: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """`chunks()`, each output contiguous in its signature's dtype (bytes objects for BYTES), with
    its row count; empty chunks dropped. A chunk unlike the signature is the caller's bug: ValueError."""
    seen = 0
    for chunk in chunks():
        arrays = {}
        for spec in specs:
            if spec.name not in chunk:
                raise ValueError(f"a chunk has no output '{spec.name}'")
            array = np.asarray(chunk[spec.name])
            if array.ndim == 0 or not spec.fits(array.shape[1:]):
                raise ValueError(f"output '{spec.name}' has shape {list(array.shape)}, rows of "
                                 f"{list(spec.row_shape)} expected")
            array = array.reshape(len(array), *spec.row_shape) if spec.one_element else array
            arrays[spec.name] = (_as_bytes(array) if spec.datatype == "BYTES"
                                 else np.ascontiguousarray(array, dtype=spec.dtype))
        rows = {len(array) for array in arrays.values()}
        if len(rows) > 1:
            raise ValueError(f"a chunk's outputs have different row counts: {sorted(rows)}")
        if rows and (count := rows.pop()):
            seen += count
            yield count, arrays
    if seen != total_rows:
        raise ValueError(f"the chunks held {seen} rows, total_rows said {total_rows}")


def _write_array(stream: IO[bytes], spec: Spec, total_rows: int, chunks: Chunks, fmt: str) -> None:
    """One output as an npy: the header for (total_rows, *row shape), then each chunk's bytes."""
    dtype = spec.dtype
    if spec.datatype == "BYTES":  # numpy's fixed-width bytes: as wide as the longest, found by a first pass
        widest = max((len(value) for _, arrays in _batches(chunks, [spec], total_rows)
                      for value in arrays[spec.name].flat), default=0)
        dtype = np.dtype(f"S{max(widest, 1)}")
    row_shape: tuple[int, ...] | None = None
    for _, arrays in _batches(chunks, [spec], total_rows):
        array = arrays[spec.name]
        if row_shape is None:
            row_shape = array.shape[1:]
            _npy_header(stream, dtype, (total_rows, *row_shape))
        elif array.shape[1:] != row_shape:
            raise JobFileError(f"output '{spec.name}' changes shape between batches ({list(row_shape)}, then "
                               f"{list(array.shape[1:])}): {fmt} needs one; use parquet, csv or jsonl")
        stream.write(np.ascontiguousarray(array, dtype=dtype).reshape(-1).view(np.uint8).data)
    if row_shape is None:  # no rows: the signature's shape, free axes empty
        _npy_header(stream, dtype, (0, *(max(length, 0) for length in spec.row_shape)))


def _npy_header(stream: IO[bytes], dtype: np.dtype, shape: tuple[int, ...]) -> None:
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(stream, header)


def _write_npy(destination: BinaryIO, specs: list[Spec], total_rows: int, chunks: Chunks) -> None:
    if len(specs) != 1:
        raise _npy_holds_one(len(specs), "outputs")
    _write_array(destination, specs[0], total_rows, chunks, "npy")


def _write_npz(destination: BinaryIO, specs: list[Spec], total_rows: int, chunks: Chunks) -> None:
    # stored, not deflated (np.savez's choice): floats barely compress; ZIP64 for members past 4 GiB
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for spec in specs:
            with archive.open(f"{spec.name}.npy", "w", force_zip64=True) as member:
                _write_array(member, spec, total_rows, chunks, "npz")


def _arrow_type(spec: Spec) -> pa.DataType:
    """A plain column for one-element rows, else a fixed-size list per static axis, a list per free one."""
    kind = _ARROW_TYPES[spec.datatype]
    for length in () if spec.one_element else reversed(spec.row_shape):
        kind = pa.list_(kind, length) if length >= 0 else pa.list_(kind)
    return kind


def _arrow_column(array: np.ndarray, spec: Spec, kind: pa.DataType) -> pa.Array:
    """Rows as a (nested) list column built over the flat values: no Python object per row."""
    values = pa.array(array.reshape(-1), type=_ARROW_TYPES[spec.datatype])
    if spec.one_element:
        return values
    types, row_shape = [kind], array.shape[1:]
    while is_list(types[-1]):
        types.append(types[-1].value_type)
    for axis in reversed(range(len(row_shape))):
        if pa.types.is_fixed_size_list(types[axis]):
            values = pa.FixedSizeListArray.from_arrays(values, type=types[axis])
        else:  # uniform offsets: this axis's length apart
            count = len(array) * int(np.prod(row_shape[:axis]))
            offsets = pa.array(np.arange(count + 1, dtype=np.int32) * row_shape[axis])
            values = pa.ListArray.from_arrays(offsets, values, type=types[axis])
    return values


def _write_parquet(destination: BinaryIO, specs: list[Spec], total_rows: int, chunks: Chunks) -> None:
    schema = pa.schema([(spec.name, _arrow_type(spec)) for spec in specs])
    with pq.ParquetWriter(destination, schema) as writer:
        for rows, arrays in _batches(chunks, specs, total_rows):
            columns = [_arrow_column(arrays[spec.name], spec, schema.field(spec.name).type) for spec in specs]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group_size=rows)  # one group a chunk


def _csv_columns(spec: Spec) -> list[tuple[str, pa.DataType]]:
    """One-element rows: a column `name`; static rows: `name.0`, `name.1`, ... (C order); rows with
    a free axis: a column `name` of JSON arrays."""
    kind = pa.string() if spec.datatype == "BYTES" else _ARROW_TYPES[spec.datatype]
    if spec.one_element:
        return [(spec.name, kind)]
    if spec.static:
        return [(f"{spec.name}.{index}", kind) for index in range(int(np.prod(spec.row_shape)))]
    return [(spec.name, pa.string())]


def _csv_cells(array: np.ndarray, spec: Spec) -> list[Any]:
    if spec.datatype == "BYTES":
        array = _as_text(array)
    if spec.one_element:
        return [array.reshape(-1)]
    if spec.static:
        return list(array.reshape(len(array), -1).T)
    if spec.datatype == "BYTES":
        return [[orjson.dumps(row).decode() for row in array.tolist()]]
    return [[orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY).decode() for row in array]]


def _write_csv(destination: BinaryIO, specs: list[Spec], total_rows: int, chunks: Chunks) -> None:
    schema = pa.schema([column for spec in specs for column in _csv_columns(spec)])
    with pacsv.CSVWriter(destination, schema) as writer:
        for _, arrays in _batches(chunks, specs, total_rows):
            cells = [column for spec in specs for column in _csv_cells(arrays[spec.name], spec)]
            columns = [pa.array(column, type=field.type) for column, field in zip(cells, schema, strict=True)]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))


def _write_jsonl(destination: BinaryIO, specs: list[Spec], total_rows: int, chunks: Chunks) -> None:
    # numpy values serialised by orjson: float32 as its shortest text (0.1, not 0.10000000149011612)
    option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    for rows, arrays in _batches(chunks, specs, total_rows):
        columns = [(spec.name, _as_text(arrays[spec.name]).tolist() if spec.datatype == "BYTES" else arrays[spec.name])
                   for spec in specs]
        destination.write(b"".join(orjson.dumps({name: values[index] for name, values in columns}, option=option)
                                   for index in range(rows)))
