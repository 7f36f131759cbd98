"""The benchmark harness itself, run for real in quick mode on M1 (real uvicorn, Redis, worker,
naive server and wrk). It asserts the shape of what it writes, never a speed."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

EXPECTED_PATHS = {"naive", "rest_json", "rest_binary", "websocket", "shadow"}


def test_quick_mode_writes_every_path_and_ratio(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    # the offline rows at tiny sizes: a 20k-row job in 4 chunks, a stream of 4k events
    run = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--output", str(output), "--job-rows",
                          "M1=20000", "--job-chunk", "M1=5000", "--stream-events", "4000"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(output.read_text())
    assert set(report["raw"]["M1"]) == {"1", "4", "16", "64"}
    assert all(rate > 0 for rate in report["raw"]["M1"].values())
    # the limit again around every group of cells (1 round × 3 client counts: 4 measurements)
    assert len(report["raw_points"]["M1"]) == 4
    assert all(cell["raw_limit"] > 0 and isinstance(cell["seconds"], float) for cell in report["cells"])
    rows = report["summary"]
    assert {(r["path"], r["clients"]) for r in rows} == {(p, c) for p in EXPECTED_PATHS for c in (1, 16, 64)}
    for row in rows:
        assert row["rps"]  # the cell ran and answered
        assert row["p50_ms"] <= row["p99_ms"]  # percentiles are ordered
        assert row["errors"] == 0, row
        assert row["ratio_to_raw"] > 0
        if row["path"] != "naive":
            assert row["ratio_to_naive"] > 0 and len(row["ratio_to_naive_range"]) == 2
            assert row["mean_batch_rows"] >= 1
            assert {"web", "worker", "redis", "loadgen"} <= set(row["cpu_s"])
    shadow = [r for r in rows if r["path"] == "shadow"]
    assert all(r["p50_vs_rest_binary"] > 0 for r in shadow)  # M1 with a 100% shadow, beside the plain row
    assert output.with_suffix(".png").stat().st_size > 10_000
    assert "| M1 | rest_binary | 64 |" in run.stdout
    # the offline rows: a batch job, REST binary beside a job at 16 and 64 clients, a stream per batch size
    offline = report["offline"]["M1"]
    assert {(r["kind"], r.get("clients") or r.get("batch_size")) for r in report["offline_summary"]} == {
        ("batch", None), ("shared", 16), ("shared", 64), ("stream", 256), ("stream", 1024)}
    assert all(r["ratio"] > 0 and r["met"] in (True, False) for r in report["offline_summary"])
    assert all(r["rows_per_s"] > 0 and r["e2e_rows_per_s"] > 0 and r["phases_s"] for r in offline["batch"]["runs"])
    assert all(r["cpu_s"]["worker"] > 0 and r["worker_threads_cpu_s"] for r in offline["batch"]["runs"])
    assert all(c["job_rows_per_s"] > 0 and c["during"]["errors"] == 0 for c in offline["shared"])
    assert all(s["events_per_s"] > 0 and s["dead"] == 0 and s["lag_at_end"] == 0 for s in offline["stream"])
    assert "CPU seconds each process used while the job ran" in run.stdout
    assert "| M1 | batch job |" in run.stdout and "| M1 | stream |" in run.stdout


def test_max_batch_size_is_the_largest_within_10_percent_up_to_16_unless_a_bigger_batch_is_clearly_best() -> None:
    from bench.raw import batch_size_for

    assert batch_size_for({"1": 34e3, "4": 139e3, "16": 316e3, "64": 595e3}) == 64  # overhead-bound (M1)
    assert batch_size_for({"1": 253, "4": 254, "16": 251, "64": 259}) == 16  # compute-bound, flat (M2)
    assert batch_size_for({"1": 202.4, "4": 200.1, "16": 182.4, "64": 211.5}) == 16  # a noisy M2 sweep
    assert batch_size_for({"1": 42.4, "4": 46.0, "16": 40.3, "64": 41.9}) == 4  # 16 runs >10% slower (M3)
    assert batch_size_for({"1": 19.9, "4": 20.0, "16": 19.2, "64": 20.5}) == 16  # 64 not 5% ahead


def test_the_websocket_load_generator_masks_every_length_form() -> None:
    import numpy as np

    from bench.ws_load import TEXT, frame

    for length in (0, 125, 126, 65535, 65536):
        payload = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
        data = frame(TEXT, payload)
        assert data[0] == 0x81 and data[1] & 0x80  # final text frame, masked
        size, offset = data[1] & 0x7F, 2
        if size == 126:
            size, offset = int.from_bytes(data[2:4], "big"), 4
        elif size == 127:
            size, offset = int.from_bytes(data[2:10], "big"), 10
        assert size == length
        mask = np.resize(np.frombuffer(data[offset:offset + 4], dtype=np.uint8), length)
        assert (np.frombuffer(data[offset + 4:], dtype=np.uint8) ^ mask).tobytes() == payload
