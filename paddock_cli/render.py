"""What a person reads: the API's JSON as plain text lines and aligned columns (--json prints the
JSON itself). Pure functions of the answers, no I/O."""

import time
from datetime import datetime
from typing import Any

LIVE_STATES = ("running", "paused", "awaiting_approval")


def table(header: list[str], rows: list[list[str]]) -> str:
    """Columns aligned on the widest cell, two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in [header, *rows])


def when(iso: str | None) -> str:
    """An API timestamp as 'YYYY-MM-DD HH:MM:SS' in UTC, as the server keeps it; '-' for none."""
    if not iso:
        return "-"
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def size(n: int) -> str:
    """Bytes as a person reads them: 930 B, 12.4 KiB, 3.1 MiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def ms(value: float | None) -> str:
    """Milliseconds with the precision that matters at that size; '-' when there is no figure."""
    if value is None:
        return "-"
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def whoami(me: dict[str, Any]) -> str:
    """`whoami`: the person, then the token (name, scopes, expiry), then a line per team."""
    lines = [me["username"] + (" (staff)" if me["is_staff"] else "")]
    token = me.get("token")
    if token is not None:
        expires = f"expires {when(token['expires_at'])} UTC" if token["expires_at"] else "never expires"
        lines.append(f"token   {token['name']}: {', '.join(token['scopes'])}; {expires}")
    lines += [f"team    {team['name']} ({team['role']})" for team in me["teams"]] or ["team    none"]
    return "\n".join(lines)


# -- registry ------------------------------------------------------------------------------

def models(found: list[dict[str, Any]]) -> str:
    """`models list`: a row per model."""
    if not found:
        return "no models"
    rows = []
    for model in found:
        latest = model.get("latest_version")
        rows.append([
            model["name"], model.get("team") or "-",
            f"v{latest['number']} {latest['status']}" if latest else "-",
            ", ".join(f"{alias}=v{number}" for alias, number in sorted(model.get("aliases", {}).items())) or "-",
            ", ".join(model.get("tags", [])) or "-",
        ])
    return table(["NAME", "TEAM", "LATEST", "ALIASES", "TAGS"], rows)


def versions(found: list[dict[str, Any]]) -> str:
    """`models versions`: a row per version, newest first."""
    if not found:
        return "no versions"
    rows = [[f"v{v['number']}", v["status"], v["format"], size(v["size"]), v["sha256"][:12],
             ", ".join(v.get("aliases", [])) or "-", when(v.get("created_at"))] for v in found]
    return table(["VERSION", "STATUS", "FORMAT", "SIZE", "SHA256", "ALIASES", "CREATED"], rows)


def tensors(specs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{t['name']} {t['datatype']} {t['shape']}" for t in specs) or "-"


def version_report(version: dict[str, Any], created: bool = True) -> str:
    """A version after validation: what was stored, its signature and how the worker ran it."""
    lines = [f"{version['model']} v{version['number']}: {version['status']}"
             + ("" if created else " (these bytes were already this version)"),
             f"  artifact  {version['original_filename']}, {version['format']}, {size(version['size'])}, "
             f"sha256 {version['sha256']}",
             f"  inputs    {tensors(version.get('inputs', []))}",
             f"  outputs   {tensors(version.get('outputs', []))}"]
    if version.get("aliases"):
        lines.append(f"  aliases   {', '.join(version['aliases'])}")
    if version["status"] == "failed":
        lines.append(f"  failed    {version['status_reason']}")
    report = version.get("validation_report") or {}
    if report:
        lines.append(f"  runtime   {report.get('runtime')} {report.get('runtime_version')} on "
                     f"{report.get('provider')}, loaded in {ms(report.get('load_ms'))}")
        for run in report.get("runs", []):
            shapes = ", ".join(f"{name} {shape}" for name, shape in run.get("output_shapes", {}).items())
            lines.append(f"  batch {run['batch_size']:<3} {ms(run.get('latency_ms'))} per run -> {shapes}")
    return "\n".join(lines)


# -- rollouts ------------------------------------------------------------------------------

def _step(rollout: dict[str, Any]) -> str:
    """Where the rollout stands, in words."""
    index, steps, candidate = rollout["step_index"], rollout["steps"], rollout["candidate_version"]
    if rollout["state"] not in LIVE_STATES:
        return f"ended {when(rollout.get('ended_at'))}: {rollout.get('reason') or rollout['state']}"
    if rollout["state"] == "awaiting_approval":
        return "waiting for an admin to approve the final step (paddock rollout approve)"
    if index < 0:
        check = rollout.get("last_check") or {}
        held = f" (held by {check['warm_workers']} of {check['needed']} workers needed)" if "needed" in check else ""
        return f"warming v{candidate} on the workers, no traffic yet{held}"
    strategy = rollout["strategy"]
    if strategy == "shadow":
        return f"{steps[0]:g}% of requests mirrored to v{candidate}"
    if strategy == "ab":
        return f"A/B: v{candidate} takes {steps[0]:g}%"
    return f"step {index + 1} of {len(steps)}: v{candidate} takes {steps[index]:g}% of traffic"


def rollout(found: dict[str, Any]) -> str:
    """`rollout status`: the rollout, its latest gate check and its timeline."""
    lines = [f"rollout {found['id']} of {found['model']}: {found['strategy']} of v{found['candidate_version']} "
             f"over v{found['stable_version']}, {found['state']}",
             f"  now       {_step(found)}",
             f"  started   {when(found.get('created_at'))} by {found.get('created_by') or 'the system'}"
             + (f", approved by {found['approved_by']}" if found.get("approved_by") else "")]
    check = found.get("last_check") or {}
    if "passed" in check:
        verdict = ("failing: " + "; ".join(check["failures"]) if check.get("failures")
                   else "passed" if check["passed"] else "holding" if check.get("judged") else "too few requests yet")
        candidate, stable = check.get("candidate", {}), check.get("stable", {})
        lines.append(f"  gates     {verdict} (held {check.get('held_seconds')} s of {found['step_seconds']} s)")
        lines.append(f"  candidate {_brief(candidate)}")
        lines.append(f"  stable    {_brief(stable)}")
    events = found.get("events", [])
    if events:
        lines.append("  timeline")
        lines += [f"    {when(event['at'])}  {event['kind']:<17} {event['message']}"
                  + (f" ({event['actor']})" if event.get("actor") else "") for event in events]
    return "\n".join(lines)


def _brief(arm: dict[str, Any]) -> str:
    return (f"{arm.get('requests', 0)} requests, {arm.get('errors', 0)} errors, "
            f"p50 {ms(arm.get('p50_ms'))}, p99 {ms(arm.get('p99_ms'))}")


def rollouts(found: list[dict[str, Any]]) -> str:
    """`rollout list`: a row per rollout, newest first."""
    if not found:
        return "no rollouts"
    rows = [[str(r["id"]), r["strategy"], f"v{r['stable_version']} -> v{r['candidate_version']}", r["state"],
             when(r.get("created_at")), r.get("reason") or "-"] for r in found]
    return table(["ID", "STRATEGY", "VERSIONS", "STATE", "STARTED", "REASON"], rows)


# -- live figures --------------------------------------------------------------------------

def figures(found: dict[str, Any], now: float | None = None) -> str:
    """One `tail` line: the time, then per version its request rate, errors, latency and queue."""
    stamp = time.strftime("%H:%M:%S", time.localtime(now if now is not None else time.time()))
    weights = {route["version"]: route["weight"] for route in found.get("routes", [])}
    parts = []
    for version in found.get("versions", []):
        number, summary = version["version"], version["summary"]
        total = summary["latency_ms"]["total"]
        role = (f"{weights[number]:g}%" if number in weights else  # a split names every version it feeds
                "active" if number == found.get("active") else
                "shadow" if (found.get("shadow") or {}).get("version") == number else "idle")
        parts.append(f"v{number} {role}: {summary['rps']:g} req/s, {summary['error_rate'] * 100:.1f}% errors, "
                     f"p50 {ms(total['p50'])}, p99 {ms(total['p99'])}, queue {version['queue_depth']}")
    return f"{stamp}  {found['model']}  " + (" | ".join(parts) if parts else "no version serves")
