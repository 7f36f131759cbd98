"""Batch-job files (serving/jobs/files.py): each format written and read back against a signature,
and every refusal's exact message. No database: plain files under tmp_path."""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serving.jobs.files import FORMATS, JobFileError, format_of, output_format_for, read_inputs, write_outputs


def entry(name: str, datatype: str, *shape: int) -> dict[str, Any]:
    """One signature entry, as the registry stores it."""
    return {"name": name, "datatype": datatype, "shape": list(shape)}


X4 = [entry("x", "FP32", -1, 4)]
OUTPUTS = [entry("y", "FP32", -1, 3), entry("label", "INT64", -1), entry("mask", "BOOL", -1, 2, 2),
           entry("half", "FP16", -1, 1), entry("seq", "INT32", -1, -1)]


class WriteOnly:
    """A destination with nothing but `write`, like a hashing wrapper or an upload stream."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: Any) -> int:
        self.data += bytes(chunk)
        return memoryview(chunk).nbytes


def results(rows: int = 10) -> dict[str, np.ndarray]:
    """Outputs for OUTPUTS with awkward values: float32 that are no short decimals, integers past
    32 bits and negative, bools, float16."""
    rng = np.random.default_rng(7)
    return {
        "y": rng.standard_normal((rows, 3)).astype(np.float32) / np.float32(3),
        "label": rng.integers(-(2**40), 2**40, rows),
        "mask": rng.integers(0, 2, (rows, 2, 2)).astype(bool),
        "half": rng.standard_normal((rows, 1)).astype(np.float16),
        "seq": rng.integers(-5, 5, (rows, 2)).astype(np.int32),
    }


def chunked(arrays: dict[str, np.ndarray], size: int, calls: list[int] | None = None
            ) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    """`arrays` as write_outputs' `chunks`, `size` rows at a time; each call noted in `calls`."""

    def chunks() -> Iterator[dict[str, np.ndarray]]:
        if calls is not None:
            calls.append(1)
        rows = len(next(iter(arrays.values())))
        for start in range(0, rows, size):
            yield {name: array[start:start + size] for name, array in arrays.items()}

    return chunks


def written(tmp_path: Path, fmt: str, outputs: list[dict[str, Any]], arrays: dict[str, np.ndarray],
            size: int = 4) -> Path:
    path = tmp_path / f"results.{fmt}"
    with path.open("wb") as destination:
        write_outputs(destination, fmt, outputs, len(next(iter(arrays.values()))), chunked(arrays, size))
    return path


def refused(path: Path, fmt: str, inputs: list[dict[str, Any]]) -> str:
    with pytest.raises(JobFileError) as caught:
        read_inputs(path, fmt, inputs)
    assert str(caught.value) == caught.value.message
    return caught.value.message


def text_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def assert_same(read: dict[str, np.ndarray], expected: dict[str, np.ndarray], signature: list[dict[str, Any]]) -> None:
    assert list(read) == [tensor["name"] for tensor in signature]
    for name, array in expected.items():
        assert read[name].dtype == array.dtype, name
        np.testing.assert_array_equal(read[name], array, err_msg=name)


# --- formats ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("filename", "declared", "fmt"), [
    ("in.npy", None, "npy"), ("IN.NPZ", None, "npz"), ("in.parquet", None, "parquet"), ("in.pq", None, "parquet"),
    ("in.csv", None, "csv"), ("in.jsonl", None, "jsonl"), ("in.ndjson", None, "jsonl"),
    ("in.txt", "CSV", "csv"), ("in.csv", "jsonl", "jsonl"),
])
def test_the_format_is_the_declared_one_else_the_extensions(filename: str, declared: str | None, fmt: str) -> None:
    assert format_of(filename, declared) == fmt


def test_an_unknown_declared_format_is_refused_with_the_known_ones() -> None:
    with pytest.raises(JobFileError) as caught:
        format_of("in.csv", "xyz")
    assert caught.value.message == "unknown input format 'xyz': use one of npy, npz, parquet, csv, jsonl"


def test_a_file_of_unknown_extension_needs_a_declared_format() -> None:
    with pytest.raises(JobFileError) as caught:
        format_of("data.txt")
    assert caught.value.message == ("cannot tell the format of 'data.txt' from its extension: name it .npy, .npz, "
                                    ".parquet, .csv or .jsonl, or declare one of npy, npz, parquet, csv, jsonl")


def test_results_come_in_the_inputs_format_and_npz_for_several_outputs_of_an_npy() -> None:
    assert output_format_for("csv", OUTPUTS, None) == "csv"
    assert output_format_for("npy", OUTPUTS[:1], None) == "npy"
    assert output_format_for("npy", OUTPUTS, None) == "npz"
    assert output_format_for("npy", OUTPUTS, "Parquet") == "parquet"


def test_npy_results_are_refused_for_a_model_of_several_outputs() -> None:
    with pytest.raises(JobFileError) as caught:
        output_format_for("csv", OUTPUTS[:2], "npy")
    assert caught.value.message == "npy holds one array; this model has 2 outputs: use npz, parquet, csv or jsonl"


def test_an_unknown_output_format_is_refused() -> None:
    with pytest.raises(JobFileError) as caught:
        output_format_for("csv", OUTPUTS, "xlsx")
    assert caught.value.message == "unknown output format 'xlsx': use one of npy, npz, parquet, csv, jsonl"


# --- round trips -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", [fmt for fmt in FORMATS if fmt != "npy"])
def test_results_read_back_exactly_in_every_format(tmp_path: Path, fmt: str) -> None:
    expected = results(10)
    path = written(tmp_path, fmt, OUTPUTS, expected, size=4)
    assert_same(read_inputs(path, fmt, OUTPUTS), expected, OUTPUTS)


def test_a_single_output_reads_back_from_npy(tmp_path: Path) -> None:
    expected = {"y": results(10)["y"]}
    path = written(tmp_path, "npy", OUTPUTS[:1], expected, size=3)
    assert_same(read_inputs(path, "npy", OUTPUTS[:1]), expected, OUTPUTS[:1])
    np.testing.assert_array_equal(np.load(path), expected["y"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_bytes_read_back_in_every_format(tmp_path: Path, fmt: str) -> None:
    signature = [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}]
    expected = {"text": np.array([[b"caf\xc3\xa9"], [b"a,b \"quoted\""], [b""], [b"line\nbreak"]], dtype=object)}
    path = written(tmp_path, fmt, signature, expected, size=3)
    assert_same(read_inputs(path, fmt, signature), expected, signature)


def test_csv_writes_one_element_rows_plainly_static_rows_flattened_and_free_rows_as_json(tmp_path: Path) -> None:
    signature = [entry("y", "FP32", -1, 2), entry("n", "INT64", -1, 1), entry("seq", "INT32", -1, -1),
                 entry("t", "BYTES", -1)]
    path = written(tmp_path, "csv", signature, {
        "y": np.array([[0.1, 2], [3, 4]], np.float32), "n": np.array([[1], [-2]]),
        "seq": np.array([[1, 2], [3, 4]], np.int32), "t": np.array([b"a,b", b"\xff"], object)})
    assert path.read_text() == '"y.0","y.1","n","seq","t"\n0.1,2,1,"[1,2]","a,b"\n3,4,-2,"[3,4]","\ufffd"\n'


def test_jsonl_writes_one_object_a_row_with_float32_as_its_shortest_text(tmp_path: Path) -> None:
    signature = [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}, {"name": "n", "datatype": "INT8", "shape": [-1]}]
    path = written(tmp_path, "jsonl", signature, {"y": np.array([[0.1, 2], [3, 4]], np.float32),
                                                  "n": np.array([-1, 7], np.int8)})
    assert path.read_text() == '{"y":[0.1,2.0],"n":-1}\n{"y":[3.0,4.0],"n":7}\n'


def test_parquet_writes_fixed_size_lists_a_row_group_per_chunk(tmp_path: Path) -> None:
    path = written(tmp_path, "parquet", OUTPUTS, results(10), size=4)
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_row_groups == 3
    schema = parquet.schema_arrow
    assert schema.field("y").type == pa.list_(pa.float32(), 3)
    assert schema.field("mask").type == pa.list_(pa.list_(pa.bool_(), 2), 2)
    assert schema.field("half").type == pa.float16()
    assert schema.field("seq").type == pa.list_(pa.int32())


@pytest.mark.parametrize("fmt", FORMATS)
def test_results_stream_into_a_destination_that_can_only_be_written(tmp_path: Path, fmt: str) -> None:
    outputs = OUTPUTS[:1] if fmt == "npy" else OUTPUTS
    expected = {name: array for name, array in results(9).items() if name in {o["name"] for o in outputs}}
    destination = WriteOnly()
    write_outputs(destination, fmt, outputs, 9, chunked(expected, 4))  # type: ignore[arg-type]
    path = tmp_path / f"piped.{fmt}"
    path.write_bytes(bytes(destination.data))
    assert_same(read_inputs(path, fmt, outputs), expected, outputs)


def test_npz_asks_for_the_chunks_once_per_output(tmp_path: Path) -> None:
    calls: list[int] = []
    with (tmp_path / "r.npz").open("wb") as destination:
        write_outputs(destination, "npz", OUTPUTS, 10, chunked(results(10), 4, calls))
    assert len(calls) == len(OUTPUTS)


def test_bytes_in_npy_take_one_more_pass_to_size_the_strings(tmp_path: Path) -> None:
    calls: list[int] = []
    signature = [{"name": "s", "datatype": "BYTES", "shape": [-1]}]
    with (tmp_path / "r.npy").open("wb") as destination:
        write_outputs(destination, "npy", signature, 3, chunked({"s": np.array([b"a", b"bcd", "é"], object)}, 2, calls))
    assert len(calls) == 2
    assert np.load(tmp_path / "r.npy").tolist() == [b"a", b"bcd", "é".encode()]


def test_chunks_that_miss_total_rows_are_the_callers_bug(tmp_path: Path) -> None:
    with (tmp_path / "r.csv").open("wb") as destination, pytest.raises(ValueError) as caught:
        write_outputs(destination, "csv", X4, 5, chunked({"x": np.zeros((4, 4), np.float32)}, 2))
    assert str(caught.value) == "the chunks held 4 rows, total_rows said 5"


def test_npy_refuses_an_output_whose_shape_changes_between_chunks(tmp_path: Path) -> None:
    signature = [{"name": "seq", "datatype": "INT32", "shape": [-1, -1]}]

    def chunks() -> Iterator[dict[str, np.ndarray]]:
        yield {"seq": np.zeros((2, 3), np.int32)}
        yield {"seq": np.zeros((2, 4), np.int32)}

    with (tmp_path / "r.npy").open("wb") as destination, pytest.raises(JobFileError) as caught:
        write_outputs(destination, "npy", signature, 4, chunks)
    assert caught.value.message == ("output 'seq' changes shape between batches ([3], then [4]): npy needs one; "
                                    "use parquet, csv or jsonl")


# --- reading: what each format accepts -------------------------------------------------------------

def test_csv_reads_flattened_columns_in_c_order(tmp_path: Path) -> None:
    path = text_file(tmp_path, "in.csv", "x.0,x.1,x.2,x.3\n1,2,3,4\n5, 6 ,7.5,-8e0\n")
    np.testing.assert_array_equal(read_inputs(path, "csv", X4)["x"],
                                  np.array([[1, 2, 3, 4], [5, 6, 7.5, -8]], np.float32))


def test_csv_reads_a_column_of_json_arrays(tmp_path: Path) -> None:
    path = text_file(tmp_path, "in.csv", 'x\n"[1, 2, 3, 4]"\n"[5,6,7,8]"\n')
    assert read_inputs(path, "csv", X4)["x"].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_csv_integers_may_be_written_as_whole_floats_and_bools_as_words_or_digits(tmp_path: Path) -> None:
    signature = [{"name": "n", "datatype": "INT64", "shape": [-1]}, {"name": "b", "datatype": "BOOL", "shape": [-1, 1]}]
    path = text_file(tmp_path, "in.csv", "n,b\n3.0,true\n-2,0\n1e3,FALSE\n")
    arrays = read_inputs(path, "csv", signature)
    assert arrays["n"].tolist() == [3, -2, 1000]
    assert arrays["b"].tolist() == [[True], [False], [False]]


def test_csv_keeps_large_integers_exact(tmp_path: Path) -> None:
    signature = [{"name": "n", "datatype": "INT64", "shape": [-1]}, {"name": "u", "datatype": "UINT64", "shape": [-1]}]
    path = text_file(tmp_path, "in.csv", "n,u\n9007199254740993,18446744073709551615\n")
    arrays = read_inputs(path, "csv", signature)
    assert arrays["n"].tolist() == [9007199254740993]
    assert arrays["u"].tolist() == [18446744073709551615]


def test_jsonl_takes_nested_lists_scalars_for_one_element_rows_and_skips_blank_lines(tmp_path: Path) -> None:
    signature = [entry("m", "INT16", -1, 2, 2), entry("s", "FP64", -1, 1)]
    path = text_file(tmp_path, "in.jsonl", '{"m": [[1, 2], [3, 4]], "s": 0.5}\n\n{"s": [2], "m": [[5, 6], [7, 8]]}\n\n')
    arrays = read_inputs(path, "jsonl", signature)
    assert arrays["m"].dtype == np.int16 and arrays["m"].tolist() == [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    assert arrays["s"].tolist() == [[0.5], [2.0]]


def test_integers_are_fine_for_float_inputs(tmp_path: Path) -> None:
    path = tmp_path / "in.npy"
    np.save(path, np.arange(8, dtype=np.int64).reshape(2, 4))
    assert read_inputs(path, "npy", X4)["x"].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_parquet_reads_flattened_columns_and_plain_columns(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x.0": [1.0, 2.0], "x.1": [3, 4], "x.2": [5, 6], "x.3": [7, 8]}), path)
    assert read_inputs(path, "parquet", X4)["x"].tolist() == [[1, 3, 5, 7], [2, 4, 6, 8]]


def test_parquet_reads_a_sliced_variable_list_column_without_looking_at_each_row(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": pa.array([[1, 2, 3, 4], [5, 6, 7, 8]], pa.list_(pa.float64()))}), path)
    assert read_inputs(path, "parquet", X4)["x"].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_a_200k_row_csv_of_four_floats_reads(tmp_path: Path) -> None:
    values = np.random.default_rng(1).standard_normal((200_000, 4)).astype(np.float32)
    path = tmp_path / "big.csv"
    np.savetxt(path, values, delimiter=",", header="x.0,x.1,x.2,x.3", comments="", fmt="%.9g")
    np.testing.assert_array_equal(read_inputs(path, "csv", X4)["x"], values)


def test_a_200k_line_jsonl_reads(tmp_path: Path) -> None:
    values = np.random.default_rng(2).standard_normal((200_000, 4)).astype(np.float32)
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"x": row}) + "\n" for row in values.tolist()))
    np.testing.assert_array_equal(read_inputs(path, "jsonl", X4)["x"], values)


# --- reading: refusals -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("x.0,x.1,x.2,x.3\n1,2,3,4\n1,2,3,4\n5,6,abc,8\n", "row 3, column 'x.2': 'abc' is not a FP32 number"),
    ("x.0,x.1,x.2,x.3\n1,2,,4\n", "row 1, column 'x.2' is empty"),
    ("x.0,x.1,x.2,x.3\n1,2,1e39,4\n", "row 1, column 'x.2': '1e39' is out of range for FP32"),
    ("x.0,x.1,x.2\n1,2,3\n", "input 'x' has 3 columns ('x.0' to 'x.2'), the signature wants 4 (rows of shape [4])"),
    ("x.0,x.1,x.3,x.4\n1,2,3,4\n", "input 'x' has column 'x.4' but no 'x.2'"),
    ("x,x.0\n1,2\n", "input 'x' has both column 'x' and flattened columns 'x.0', ...: give one or the other"),
    ("y.0,y.1,y.2,y.3\n1,2,3,4\n", "missing column 'x' (or flattened columns 'x.0', 'x.1', ...)"),
    ("x.0,x.1,x.2,x.3,z,w\n1,2,3,4,5,6\n", "unknown columns 'z', 'w': the model's inputs are x"),
    ("x\n\"[1,2,3]\"\n", "row 1: input 'x' has shape [3], the signature wants [4]"),
    ("x\n\"[1,2,3,4]\"\n\"[1,2,3,\"\n", "row 2, column 'x': '[1,2,3,' is not valid JSON"),
    ("x\n\"[1,2,3,true]\"\n", "row 1, column 'x' [3]: true is not a FP32 number"),
    ("x.0,x.1,x.2,x.3\n", "the file has no rows"),
    ("", "the file has no rows"),
    ("x.0,x.1,x.2,x.3\n1,2,3,4\n5,6\n", "not a valid CSV file: CSV parse error: Expected 4 columns, got 2: 5,6"),
    ("x.0,x.0,x.1,x.2\n1,2,3,4\n", "the header names column 'x.0' twice"),
])
def test_csv_refusals_name_the_row_and_column(tmp_path: Path, text: str, message: str) -> None:
    assert refused(text_file(tmp_path, "in.csv", text), "csv", X4) == message


@pytest.mark.parametrize(("datatype", "cell", "message"), [
    ("INT64", "1.5", "row 2, column 'n': '1.5' is not a whole number (INT64)"),
    ("INT64", "nan", "row 2, column 'n': 'nan' is not a whole number (INT64)"),
    ("UINT8", "256", "row 2, column 'n': '256' is out of range for UINT8"),
    ("UINT8", "-1", "row 2, column 'n': '-1' is out of range for UINT8"),
    ("INT64", "9223372036854775808", "row 2, column 'n': '9223372036854775808' is out of range for INT64"),
    ("INT32", "seven", "row 2, column 'n': 'seven' is not a INT32 number"),
    ("BOOL", "yes", "row 2, column 'n': 'yes' is not a BOOL (true, false, 1 or 0)"),
    ("BOOL", "2", "row 2, column 'n': '2' is not a BOOL (true, false, 1 or 0)"),
])
def test_csv_cells_must_fit_their_datatype(tmp_path: Path, datatype: str, cell: str, message: str) -> None:
    path = text_file(tmp_path, "in.csv", f"n\n1\n{cell}\n0\n")
    assert refused(path, "csv", [{"name": "n", "datatype": datatype, "shape": [-1]}]) == message


@pytest.mark.parametrize(("lines", "message"), [
    ('{"x": [1,2,3,4]}\n' * 4 + '{"x": [1,2,3]}\n', "line 5: input 'x' has shape [3], the signature wants [4]"),
    ('{"x": [1,2,3,4]}\n\n{"x": [[1,2],[3]]}\n', "line 3: input 'x' is ragged (its nested lists differ in length)"),
    ('{"x": [1,2,3,"4"]}\n', "line 1, input 'x' [3]: \"4\" is not a FP32 number"),
    ('{"x": [1,2,3,4]}\n{"x": [1,2,null,4]}\n', "line 2, input 'x' [2]: null is not a FP32 number"),
    ('{"x": [1,2,3,4]}\n{"x": [1,false,3,4]}\n', "line 2, input 'x' [1]: false is not a FP32 number"),
    ('{"x": [1,2,3,1e39]}\n', "line 1, input 'x' [3]: 1e+39 is out of range for FP32"),
    ('{"x": [1,2,3,4], "z": 1}\n', "line 1: unknown input 'z': the model's inputs are x"),
    ('{"y": [1,2,3,4]}\n', "line 1: input 'x' is missing"),
    ('{"x": [1,2,3,4]}\n{"x": [1,2,3,4],}\n', "line 2 is not valid JSON: trailing comma is not allowed at column 16"),
    ('[1,2,3,4]\n', "line 1 is not a JSON object"),
    ("\n\n", "the file has no rows"),
])
def test_jsonl_refusals_name_the_line_and_input(tmp_path: Path, lines: str, message: str) -> None:
    assert refused(text_file(tmp_path, "in.jsonl", lines), "jsonl", X4) == message


def test_jsonl_rows_must_share_one_shape_where_the_signature_leaves_it_free(tmp_path: Path) -> None:
    path = text_file(tmp_path, "in.jsonl", '{"s": [1, 2]}\n{"s": [3, 4]}\n{"s": [5]}\n')
    message = refused(path, "jsonl", [{"name": "s", "datatype": "INT64", "shape": [-1, -1]}])
    assert message == "line 3: input 's' has shape [1], line 1 has [2]: all rows of an input share one shape"


def test_jsonl_integers_refuse_fractions_and_bytes_refuse_numbers(tmp_path: Path) -> None:
    signature = [{"name": "n", "datatype": "INT64", "shape": [-1]}, {"name": "t", "datatype": "BYTES", "shape": [-1]}]
    path = text_file(tmp_path, "in.jsonl", '{"n": 1, "t": "a"}\n{"n": 2.5, "t": "b"}\n')
    assert refused(path, "jsonl", signature) == "line 2, input 'n': 2.5 is not a whole number (INT64)"
    path = text_file(tmp_path, "in.jsonl", '{"n": 1, "t": "a"}\n{"n": 2.0, "t": 3}\n')
    assert refused(path, "jsonl", signature) == "line 2, input 't': 3 is not a string (BYTES)"


def test_a_parquet_file_that_is_not_one_is_refused_without_its_path(tmp_path: Path) -> None:
    path = text_file(tmp_path, "in.parquet", "x.0\n1\n2\n3\n")
    assert refused(path, "parquet", X4) == ("not a valid Parquet file: Parquet magic bytes not found in footer. "
                                            "Either the file is corrupted or this is not a parquet file.")


@pytest.mark.parametrize(("column", "message"), [
    (pa.array([[1, 2, 3, 4], [1, 2, 3]], pa.list_(pa.float32())),
     "row 2: input 'x' has shape [3], the signature wants [4]"),
    (pa.array([[1, 2, 3, 4], None], pa.list_(pa.float32())), "row 2, column 'x' is empty"),
    (pa.array([[1, 2, 3, 4], [1, None, 3, 4]], pa.list_(pa.float32())), "row 2, column 'x' [1] is empty"),
    (pa.array([[[1, 2, 3, 4]]], pa.list_(pa.list_(pa.float32()))),
     "row 1: input 'x' has shape [1, 4], the signature wants [4]"),
    (pa.array([1.0, 2.0]), "column 'x' holds one double value a row, the signature wants rows of shape [4]: "
                           "give a list column or flattened columns"),
    (pa.array([["a", "b", "c", "d"]]), "row 1, column 'x' [0]: 'a' is not a FP32 number"),
])
def test_parquet_list_columns_are_checked_through_their_offsets(tmp_path: Path, column: pa.Array, message: str) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": column}), path)
    assert refused(path, "parquet", X4) == message


def test_parquet_integer_columns_refuse_fractions_and_typed_mismatches(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"n": pa.array([1.0, 2.5]), "t": pa.array([1, 2])}), path)
    signature = [{"name": "n", "datatype": "INT32", "shape": [-1]}, {"name": "t", "datatype": "BYTES", "shape": [-1]}]
    assert refused(path, "parquet", signature) == "row 2, column 'n': 2.5 is not a whole number (INT32)"
    pq.write_table(pa.table({"n": pa.array([1.0, 2.0]), "t": pa.array([1, 2])}), path)
    assert refused(path, "parquet", signature) == "column 't' holds int64 values, the signature wants BYTES"


def test_npy_is_for_a_model_of_one_input(tmp_path: Path) -> None:
    path = tmp_path / "in.npy"
    np.save(path, np.zeros((2, 4), np.float32))
    assert refused(path, "npy", OUTPUTS[:2]) == ("npy holds one array; this model has 2 inputs: "
                                                "use npz, parquet, csv or jsonl")


def test_npy_refuses_pickled_object_arrays(tmp_path: Path) -> None:
    path = tmp_path / "in.npy"
    np.save(path, np.array([[{"a": 1}, None, 3, 4]], dtype=object), allow_pickle=True)
    assert refused(path, "npy", X4) == ("array 'x' holds Python objects (a pickled object array), which Paddock does "
                                        "not load: save a numeric or string array")


@pytest.mark.parametrize(("array", "message"), [
    (np.zeros((2, 3), np.float32), "array 'x' has rows of shape [3], the signature wants [4]"),
    (np.zeros(4, np.float32), "array 'x' has rows of shape [], the signature wants [4]"),
    (np.float32(1), "array 'x' is a scalar: it needs a first axis of rows"),
    (np.zeros((0, 4), np.float32), "the file has no rows"),
    (np.zeros((1, 4), np.complex64), "array 'x' has dtype complex64, the signature wants FP32"),
    (np.array([[1, 2, 3, 4]], bool), "row 1, array 'x' [0]: true is not a FP32 number"),
    (np.array([["1", "2", "3", "4"]]), "array 'x' has dtype <U1, the signature wants FP32"),
])
def test_npy_arrays_must_fit_the_signature(tmp_path: Path, array: np.ndarray, message: str) -> None:
    path = tmp_path / "in.npy"
    np.save(path, array)
    assert refused(path, "npy", X4) == message


def test_npy_integers_refuse_fractions_naming_row_and_element(tmp_path: Path) -> None:
    path = tmp_path / "in.npy"
    np.save(path, np.array([[1, 2], [3, 4.5]]))
    signature = [{"name": "n", "datatype": "INT64", "shape": [-1, 2]}]
    assert refused(path, "npy", signature) == "row 2, array 'n' [1]: 4.5 is not a whole number (INT64)"


def test_a_corrupt_npy_is_refused(tmp_path: Path) -> None:
    path = text_file(tmp_path, "in.npy", "x.0,x.1\n1,2\n")
    assert refused(path, "npy", X4) == ("not a valid npy file: the magic string is not correct; expected "
                                        "b'\\x93NUMPY', got b'x.0,x.'")


def test_npz_arrays_are_named_by_input_and_share_their_row_count(tmp_path: Path) -> None:
    path = tmp_path / "in.npz"
    signature = OUTPUTS[:2]
    np.savez(path, y=np.zeros((3, 3), np.float32), label=np.zeros(2, np.int64))
    assert refused(path, "npz", signature) == ("array 'label' has 2 rows, array 'y' has 3: "
                                               "every input needs the same number of rows")
    np.savez(path, y=np.zeros((3, 3), np.float32))
    assert refused(path, "npz", signature) == "missing array 'label'"
    np.savez(path, y=np.zeros((3, 3), np.float32), label=np.zeros(3, np.int64), extra=np.zeros(3))
    assert refused(path, "npz", signature) == "unknown array 'extra': the model's inputs are y, label"


def test_npz_refuses_a_pickled_member_and_a_file_that_is_no_zip(tmp_path: Path) -> None:
    path = tmp_path / "in.npz"
    np.savez(path, x=np.array([[None, 1, 2, 3]], dtype=object))
    assert refused(path, "npz", X4) == ("array 'x' holds Python objects (a pickled object array), which Paddock does "
                                        "not load: save a numeric or string array")
    path.write_bytes(b"x.0,x.1,x.2,x.3\n1,2,3,4\n")
    assert refused(path, "npz", X4) == "not a valid npz file: it is not a zip archive (as np.savez writes)"


def test_csv_skips_blank_lines_without_counting_them(tmp_path: Path) -> None:
    path = text_file(tmp_path, "in.csv", "x.0,x.1,x.2,x.3\n1,2,3,4\n\n5,6,x,8\n")
    assert refused(path, "csv", X4) == "row 2, column 'x.2': 'x' is not a FP32 number"


def test_flattened_columns_need_a_row_shape_with_at_most_one_free_axis(tmp_path: Path) -> None:
    path = text_file(tmp_path, "in.csv", "m.0,m.1\n1,2\n")
    assert refused(path, "csv", [entry("m", "FP32", -1, -1, 2)]) == (
        "input 'm' has rows of shape [-1, 2], more than one free axis: give it as one column 'm' of nested lists")


def test_csv_reads_a_free_axis_from_its_count_of_flattened_columns(tmp_path: Path) -> None:
    path = text_file(tmp_path, "in.csv", "s.0,s.1,s.2\n1,2,3\n")
    assert read_inputs(path, "csv", [entry("s", "INT8", -1, -1)])["s"].tolist() == [[1, 2, 3]]


def test_parquet_list_rows_must_share_one_shape_where_the_signature_leaves_it_free(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"s": pa.array([[[1, 2]], [[3, 4]], [[5, 6], [7, 8]]], pa.list_(pa.list_(pa.int64())))}),
                   path)
    assert refused(path, "parquet", [entry("s", "INT64", -1, -1, 2)]) == (
        "row 3: input 's' has shape [2, 2], row 1 has [1, 2]: all rows of an input share one shape")


def test_parquet_ignores_the_index_pandas_writes(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"__index_level_0__": [10, 11], "n": [1, 2]}), path)
    assert read_inputs(path, "parquet", [entry("n", "UINT16", -1)])["n"].tolist() == [1, 2]
