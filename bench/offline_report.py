"""The offline rows in the report (bench/offline.py measures them): one summary row per batch job,
per client count beside a job and per stream batch size, with its ratio and target; their
Markdown table and their panel of the chart."""

import statistics
from typing import Any

# (ratio, target, whether the ratio must be at least the target)
TARGETS = {"batch": (0.9, True), "shared": (1.5, False), "stream": (1.0, True)}


def summarize_offline(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Medians over rounds of what report["offline"] holds, with ranges and targets."""
    rows: list[dict[str, Any]] = []
    for model, found in report.get("offline", {}).items():
        if "batch" in found:
            rows.append(_batch_row(report, model, found["batch"]))
        for clients in sorted({cell["clients"] for cell in found.get("shared", [])}):
            rows.append(_shared_row(model, [c for c in found["shared"] if c["clients"] == clients]))
        rest = next((r for r in report.get("summary", []) if r["model"] == model and r["path"] == "rest_binary"
                     and r["clients"] == 64), None)
        for run in found.get("stream", []):
            rows.append({
                "model": model, "kind": "stream", "batch_size": run["batch_size"], "events": run["events"],
                "events_per_s": run["events_per_s"], "steady_events_per_s": run["steady_events_per_s"],
                "dead": run["dead"], "lag_at_end": run["lag_at_end"],
                "rest_binary_64_rps": rest["rps"] if rest else None,
                "ratio": run["events_per_s"] / rest["rps"] if rest else None, "range": None})
    for row in rows:
        target, at_least = TARGETS[row["kind"]]
        row["target"], row["at_least"] = target, at_least
        row["met"] = None if row["ratio"] is None else (row["ratio"] >= target if at_least else row["ratio"] <= target)
    return rows


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _batch_row(report: dict[str, Any], model: str, batch: dict[str, Any]) -> dict[str, Any]:
    runs = batch["runs"]
    ratios = [r["ratio_to_raw"] for r in runs]
    phases = [r["phases_s"] for r in runs if r["phases_s"]]
    rate = _median([r["rows_per_s"] for r in runs])
    return {
        "model": model, "kind": "batch", "rows": batch["rows"], "chunk_size": batch["chunk_size"],
        "run_rows": batch["run_rows"], "rows_per_s": rate, "ratio": _median(ratios),
        "range": [min(ratios), max(ratios)],
        "e2e_rows_per_s": _median([r["e2e_rows_per_s"] for r in runs]),
        "e2e_ratio": _median([r["e2e_ratio_to_raw"] for r in runs]),
        "ratio_to_first_sweep": rate / max(report["raw"][model].values()),
        "compute_rows_per_s": _median([r["compute_rows_per_s"] for r in runs if r["compute_rows_per_s"]] or [0.0]),
        "raw_at_run_rows": batch.get("raw_at_run_rows"),
        "phases_s": {name: _median([p[name] for p in phases]) for name in (phases[0] if phases else {})},
        "cpu_s": {role: _median([r["cpu_s"][role] for r in runs]) for role in runs[0].get("cpu_s", {})},
    }


def _shared_row(model: str, cells: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [c["p99_ratio"] for c in cells]
    return {
        "model": model, "kind": "shared", "clients": cells[0]["clients"], "ratio": _median(ratios),
        "range": [min(ratios), max(ratios)],
        "p99_idle_ms": _median([(c["idle"][0]["p99_ms"] + c["idle"][1]["p99_ms"]) / 2 for c in cells]),
        "p99_during_ms": _median([c["during"]["p99_ms"] for c in cells]),
        "rps_during": _median([c["during"]["rps"] for c in cells]),
        "rps_ratio": _median([c["rps_ratio"] for c in cells]),
        "job_rows_per_s": _median([c["job_rows_per_s"] for c in cells]),
        "errors": sum(c["during"]["errors"] + sum(i["errors"] for i in c["idle"]) for c in cells),
        "job_outlasted_cell": all(c["job_outlasted_cell"] for c in cells),
    }


def _ratio(row: dict[str, Any]) -> str:
    if row["ratio"] is None:
        return "n/a"
    spread = f" ({row['range'][0]:.2f}–{row['range'][1]:.2f})" if row["range"] else ""
    return f"{row['ratio']:.2f}{spread}"


def describe(row: dict[str, Any]) -> tuple[str, str, str, str]:
    """(row, setting, result, what the ratio divides by) of one offline summary row."""
    if row["kind"] == "batch":
        return ("batch job", f"{row['rows']:,} rows (npy), chunks of {row['chunk_size']:,}, "
                             f"{row['run_rows']:,} rows per inference",
                f"{row['rows_per_s']:,.0f} rows/s; end to end {row['e2e_rows_per_s']:,.0f} "
                f"({row['e2e_ratio']:.2f} ÷ raw); its inferences alone {row['compute_rows_per_s']:,.0f} (raw at "
                f"{row['run_rows']:,} rows {row['raw_at_run_rows'] or 0:,.0f})",
                "÷ raw (best batch, around the job)")
    if row["kind"] == "shared":
        outlasted = "" if row["job_outlasted_cell"] else " (the jobs ended before the cell)"
        return ("REST binary beside a job", f"{row['clients']} clients",
                f"p99 {row['p99_during_ms']:.2f} ms beside the job, {row['p99_idle_ms']:.2f} idle; "
                f"{row['rps_during']:,.0f} req/s ({row['rps_ratio']:.2f} × idle); job "
                f"{row['job_rows_per_s']:,.0f} rows/s meanwhile{outlasted}", "p99 ÷ p99 idle")
    rest = "" if row["rest_binary_64_rps"] is None else f" ({row['rest_binary_64_rps']:,.0f} req/s)"
    steady = "" if row["steady_events_per_s"] is None else f" ({row['steady_events_per_s']:,.0f} from the first " \
                                                            "prediction)"
    return ("stream", f"batch_size {row['batch_size']}, {row['events']:,} one-row binary events",
            f"{row['events_per_s']:,.0f} events/s{steady}; lag at the end {row['lag_at_end']}, "
            f"{row['dead']} dead letters", f"÷ REST binary req/s at 64 clients{rest}")


def offline_table(report: dict[str, Any]) -> str:
    """The offline rows as Markdown, with where the batch jobs' time went; '' when there are none."""
    rows = report.get("offline_summary") or []
    if not rows:
        return ""
    lines = ["| model | row | setting | result | ratio | median (range) | target |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        name, setting, result, divisor = describe(row)
        lines.append(f"| {row['model']} | {name} | {setting} | {result} | {divisor} | {_ratio(row)} | "
                     f"{'≥' if row['at_least'] else '≤'} {row['target']} |")
    phases = [f"{r['model']}: " + ", ".join(f"{name} {seconds:.3f}" for name, seconds in r["phases_s"].items())
              for r in rows if r["kind"] == "batch" and r["phases_s"]]
    where = ("\n\nWhere a batch job's time went, seconds (median over rounds; upload: the POST until its "
             "answer; compute: the chunks' inferences; chunk_other: the rest of each chunk from its claim to "
             "its done; between_chunks: Celery between them; assembly: the last chunk to succeeded): "
             + "; ".join(phases)) if phases else ""
    cpu = [f"{r['model']}: " + ", ".join(f"{role} {seconds:.2f}" for role, seconds in r["cpu_s"].items())
           for r in rows if r["kind"] == "batch" and r.get("cpu_s")]
    where += ("\n\nCPU seconds each process used while the job ran (from its accepted upload to its end; "
              "bench: the bench's own polls, every JOB_POLL_SECONDS): " + "; ".join(cpu)) if cpu else ""
    return ("Offline rows (bench/offline.py; medians over rounds, range over rounds in brackets):\n\n"
            + "\n".join(lines) + where)


def draw_offline(axis: Any, report: dict[str, Any], model: str) -> None:
    """The model's offline ratios as horizontal bars (green: target met), each target a black tick."""
    rows = [r for r in report.get("offline_summary") or [] if r["model"] == model and r["ratio"] is not None]
    if not rows:
        axis.axis("off")
        axis.text(0.5, 0.5, f"{model}: no offline rows", ha="center", va="center")
        return
    labels = {"batch": lambda r: "batch job ÷ raw",
              "shared": lambda r: f"p99 beside job ÷ idle, c={r['clients']}",
              "stream": lambda r: f"stream ÷ REST@64, b={r['batch_size']}"}
    names = [f"{labels[r['kind']](r)} {'≥' if r['at_least'] else '≤'} {r['target']}" for r in rows]
    places = list(range(len(rows)))
    axis.barh(places, [r["ratio"] for r in rows], color=["tab:green" if r["met"] else "tab:red" for r in rows])
    axis.scatter([r["target"] for r in rows], places, marker="|", s=300, color="black", zorder=3)
    for place, row in zip(places, rows, strict=True):
        axis.text(row["ratio"], place, f" {row['ratio']:.2f}", va="center", fontsize=8)
    axis.set_xlim(0, 1.25 * max(max(r["ratio"], r["target"]) for r in rows))
    axis.set_yticks(places, names, fontsize=7)
    axis.invert_yaxis()
    axis.set_title(f"{model}: offline rows (tick: target)")
    axis.grid(alpha=0.3, axis="x")
