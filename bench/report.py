"""The report: its summary rows, the Markdown table, the PNG chart and the docs/benchmarks.md refresh."""

import json
import re
import shutil
import statistics
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.cells import PATHS
from bench.offline_report import draw_offline, offline_table

DOC = ROOT / "docs" / "benchmarks.md"


def summarize(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model, path and client count: medians over rounds, with the ratio to the
    raw limit (its best batch) and to the naive server measured in the same round; Paddock's
    rows also carry their ratio to each peer measured in the same round."""
    rows = []
    cells = report["cells"]
    peer_names = report["config"].get("peers", [])
    for model in report["config"]["models"]:
        raw_best = max(report["raw"][model].values())
        for path in [*PATHS, *peer_names]:
            for clients in report["config"]["clients"]:
                mine = [c for c in cells if c["model"] == model and c["path"] == path and c["clients"] == clients]
                if not mine:
                    continue
                ratios = _round_ratios(mine, cells, "naive")
                row = {
                    "model": model, "path": path, "clients": clients,
                    "rps": statistics.median(c["rps"] for c in mine),
                    "p50_ms": statistics.median(c["p50_ms"] for c in mine),
                    "p95_ms": statistics.median(c["p95_ms"] for c in mine),
                    "p99_ms": statistics.median(c["p99_ms"] for c in mine),
                    "errors": sum(c["errors"] for c in mine),
                    "ratio_to_raw": _ratio_to_raw(report, model, mine, raw_best),
                    "ratio_to_naive": statistics.median(ratios) if ratios else None,
                    "ratio_to_naive_range": [min(ratios), max(ratios)] if ratios else None,
                    "mean_batch_rows": _median_or_none([c.get("mean_batch_rows") for c in mine]),
                    "cpu_s": {key.removeprefix("cpu_").removesuffix("_s"): statistics.median(c[key] for c in mine)
                              for key in mine[0] if key.startswith("cpu_")},
                }
                if path in PATHS and path != "naive":
                    for peer in peer_names:
                        to_peer = _round_ratios(mine, cells, peer)
                        row[f"ratio_to_{peer}"] = statistics.median(to_peer) if to_peer else None
                        row[f"ratio_to_{peer}_range"] = [min(to_peer), max(to_peer)] if to_peer else None
                rows.append(row)
    for row in rows:
        if row["path"] == "shadow":
            plain = next((r for r in rows if r["model"] == row["model"] and r["clients"] == row["clients"]
                          and r["path"] == "rest_binary"), None)
            row["p50_vs_rest_binary"] = row["p50_ms"] / plain["p50_ms"] if plain and plain["p50_ms"] else None
    return rows


def _ratio_to_raw(report: dict[str, Any], model: str, mine: list[dict[str, Any]], raw_best: float) -> float:
    """Median over rounds of the cell's rps ÷ the raw limit measured around its group of cells
    (older results: ÷ the best raw batch of the same round, or of the one measurement)."""
    if all("raw_limit" in c for c in mine):
        return statistics.median(c["rps"] / c["raw_limit"] for c in mine)
    rounds = report.get("raw_rounds", {}).get(model)  # results of 2026-11-24 to 12-03
    if not rounds:
        return statistics.median(c["rps"] for c in mine) / raw_best
    return statistics.median(c["rps"] / max(rounds[c["round"]].values()) for c in mine)


def _round_ratios(mine: list[dict[str, Any]], cells: list[dict[str, Any]], other: str) -> list[float]:
    """rps of each of `mine` over the `other` path's rps in the same model, client count and round."""
    model, clients = mine[0]["model"], mine[0]["clients"]
    theirs = {c["round"]: c["rps"] for c in cells
              if c["model"] == model and c["path"] == other and c["clients"] == clients}
    return [c["rps"] / theirs[c["round"]] for c in mine if theirs.get(c["round"])]


def _median_or_none(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None  # a median of two is their mean


# -- output -----------------------------------------------------------------------------------

def table(report: dict[str, Any]) -> str:
    """The raw limits, then one Markdown row per model, path and client count (what `make bench` prints)."""
    peer_names = _measured_peers(report)
    lines = ["| model | path | clients | req/s | p50 ms | p95 ms | p99 ms | errors | ÷ raw | ÷ naive (range) "
             + "".join(f"| ÷ {peer} (range) " for peer in peer_names) + "| batch rows | CPU s (server / loadgen) |",
             "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(peer_names) + "---|---|"]
    for row in report["summary"]:
        ratios = "".join(f"{_ratio(row, other)} | " for other in ["naive", *peer_names])
        server_cpu = sum(v for k, v in row["cpu_s"].items() if k != "loadgen")
        lines.append(
            f"| {row['model']} | {row['path']} | {row['clients']} | {row['rps']:,.0f} | {row['p50_ms']:.2f} | "
            f"{row['p95_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} | {row['ratio_to_raw']:.3f} | {ratios}"
            f"{'' if row['mean_batch_rows'] is None else row['mean_batch_rows']} | "
            f"{server_cpu:.1f} / {row['cpu_s'].get('loadgen', 0):.1f} |")
    shadow = [r for r in report["summary"] if r["path"] == "shadow" and r.get("p50_vs_rest_binary")]
    if shadow:
        lines.append("\nShadow (every request mirrored to a second version after its answer): live p50 ÷ "
                     "rest_binary's p50 at " + ", ".join(f"{r['model']} c={r['clients']}: {r['p50_vs_rest_binary']:.2f}"
                                                         for r in shadow))
    points = report.get("raw_points", {})
    between_head = " between groups: best batch, min / median / max |" if points else ""
    raw = ["| model | b=1 | b=4 | b=16 | b=64 |" + between_head,
           "|---|---|---|---|---|" + ("---|" if points else "")]
    for model, limits in report["raw"].items():
        bests = sorted(max(point.values()) for point in points.get(model, []))
        between = f" {bests[0]:,.0f} / {statistics.median(bests):,.0f} / {bests[-1]:,.0f} |" if bests else ""
        raw.append(f"| {model} | " + " | ".join(f"{limits[b]:,.0f}" for b in ("1", "4", "16", "64")) + " |" + between)
    if points:
        how = ("before any server started, each batch the median of 3 slices; then between every two groups of "
               "cells at the batches within 10% of the best. ÷ raw: a cell's req/s over the mean of the best rates "
               "measured right before and right after its group, median over rounds")
    else:
        how = "the median of one measurement per round; ÷ raw uses each round's own"
    split = report.get("raw_instances", {})
    if split:
        raw.append("\nThe same, as a worker with the deployment's `instances` runs it (that many sessions of "
                   "1/instances of the threads, each running whole batches side by side; ÷ raw stays ÷ the one "
                   "session above): " + ", ".join(
                       f"{model} {s['instances']} × b={s['batch']}: {s['rows_per_s']:,.0f} rows/s "
                       f"({s['rows_per_s'] / max(report['raw'][model].values()):.2f} × its best batch)"
                       for model, s in split.items()))
    offline = offline_table(report)
    return f"Raw onnxruntime in process, rows/s ({how}):\n\n" + "\n".join(raw) + \
        "\n\nServers, one-row requests:\n\n" + "\n".join(lines) + (f"\n\n{offline}" if offline else "")


def _measured_peers(report: dict[str, Any]) -> list[str]:
    return [p for p in report["config"].get("peers", []) if any(r["path"] == p for r in report["summary"])]


def _ratio(row: dict[str, Any], other: str) -> str:
    """A row's median ratio to `other` with its range over rounds; blank where it has none."""
    if row["path"] == other or row.get(f"ratio_to_{other}") is None:
        return ""
    low, high = row[f"ratio_to_{other}_range"]
    return f"{row[f'ratio_to_{other}']:.2f} ({low:.2f}–{high:.2f})"


def chart(report: dict[str, Any], target: Path) -> None:
    """Throughput and p99 latency against clients, one column per model, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = report["config"]["models"]
    offline = bool(report.get("offline_summary"))  # a third row of panels: the offline ratios
    figure, axes = plt.subplots(2 + offline, len(models), figsize=(max(5 * len(models), 5 + 3 * offline),
                                                                    7 + 3 * offline),
                                squeeze=False)
    peer_names = _measured_peers(report)
    # One colour per path in every panel (the legend is drawn on the first panel only).
    paths = [*PATHS, *peer_names]
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colours = {path: palette[index % len(palette)] for index, path in enumerate(paths)}
    for column, model in enumerate(models):
        for path in paths:
            rows = [r for r in report["summary"] if r["model"] == model and r["path"] == path]
            if not rows:
                continue
            clients = [r["clients"] for r in rows]
            style = {"marker": "s", "linestyle": ":"} if path in peer_names else {"marker": "o"}
            style["color"] = colours[path]
            axes[0][column].plot(clients, [r["rps"] for r in rows], label=path, **style)
            axes[1][column].plot(clients, [r["p99_ms"] for r in rows], label=path, **style)
        axes[0][column].axhline(max(report["raw"][model].values()), color="grey", linestyle="--",
                                label="raw onnxruntime (best batch)")
        axes[0][column].set_title(f"{model}: throughput")
        axes[0][column].set_ylabel("req/s (log)")
        axes[0][column].set_yscale("log")  # M1's raw limit is ~100× what any server reaches
        axes[1][column].set_title(f"{model}: p99 latency")
        axes[1][column].set_ylabel("ms")
        axes[1][column].set_yscale("log")
        for axis in (axes[0][column], axes[1][column]):
            axis.set_xscale("log", base=2)
            axis.set_xlabel("concurrent clients")
            axis.grid(alpha=0.3)
        if offline:
            draw_offline(axes[2][column], report, model)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    plt.close(figure)


def _peers_line(report: dict[str, Any]) -> str:
    """'; peers: mlserver 1.7.1 (…), …' for the doc's header line, or nothing."""
    described = []
    for peer, info in report.get("peers", {}).items():
        if "version" not in info or "server" not in info:
            described.append(f"{peer} not measured ({info.get('error', 'unknown')})")
            continue
        settings = ", ".join(f"{k} {v}" for k, v in info["settings"].items() if k != "runtime")
        named = f"{peer} {info['version']}"
        server = "" if info["server"] == named else f" on {info['server']}"  # PyTriton runs Triton's server
        described.append(f"{named}{server} ({settings})")
    return "; peers: " + "; ".join(described) if described else ""


def update_doc(report: dict[str, Any], chart_file: Path) -> None:
    """Copies the chart and the JSON under docs/ and rewrites docs/benchmarks.md's bench block."""
    shutil.copyfile(chart_file, ROOT / "docs" / "benchmarks.png")
    (ROOT / "docs" / "benchmarks.json").write_text(json.dumps(report, indent=1))
    config = report["config"]
    block = (f"<!-- bench:begin (written by `make bench`) -->\nLatest full run: {report['started_at']}, "
             f"{report['machine']['cpus']} CPUs, onnxruntime {report['machine']['onnxruntime']}, "
             f"{config['web_processes']} web process(es) + 1 worker, intra-op threads "
             f"{config['intra_op_threads']}, {config['rounds']} rounds × {config['seconds']} s per cell"
             f"{_peers_line(report)}.\n\n"
             f"{table(report)}\n\n![throughput and p99 per path](benchmarks.png)\n\nEvery cell of that run: "
             f"[benchmarks.json](benchmarks.json).\n<!-- bench:end -->")
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n<!-- bench:begin -->\n<!-- bench:end -->\n"
    text = re.sub(r"<!-- bench:begin.*?<!-- bench:end -->", lambda _: block, text, flags=re.S)
    DOC.write_text(text)
