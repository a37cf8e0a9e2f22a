"""The results table, the target ratios, and the JSON document."""

from __future__ import annotations

import statistics
from typing import Any

from bench.measure import Outcome

__all__ = ["summarise", "table", "targets"]


def summarise(outcomes: list[Outcome]) -> dict[str, dict[str, Any]]:
    """Per (candidate, workers): medians, min, max over rounds."""
    rows: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        label = o.candidate if o.workers == 1 else f"{o.candidate} x{o.workers}"
        rows.setdefault(label, {"candidate": o.candidate, "workers": o.workers, "runs": []})
        rows[label]["runs"].append(o)
    for row in rows.values():
        runs: list[Outcome] = row.pop("runs")
        rates = [r.rate for r in runs]
        broker = [r.broker_cpu_s / r.events * 100_000 for r in runs if r.broker_cpu_s is not None]
        checks = [r.extra["check"] for r in runs if "check" in r.extra]
        row.update(
            rounds=len(runs),
            events=runs[0].events,
            rate_median=statistics.median(rates),
            rate_min=min(rates),
            rate_max=max(rates),
            cpu_per_100k=statistics.median(r.cpu_per_100k for r in runs),
            broker_cpu_per_100k=statistics.median(broker) if broker else None,
            peak_rss_mb=max(r.peak_rss_mb for r in runs),
            startup_s=statistics.median(r.startup_s for r in runs),
            # Output per input event, from the output checks (bench/check.py)
            records_per_event=_median(c["records_per_event"] for c in checks),
            bytes_per_event=_median(c["bytes_per_event"] for c in checks),
            rates=rates,
        )
    return rows


def _median(values: Any) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def table(rows: dict[str, dict[str, Any]], latency: dict[str, dict[str, Any]]) -> str:
    """A Markdown table: one line per candidate (and worker count)."""
    head = (
        "| candidate | events | events/s median | min | max | CPU s / 100k | broker CPU s / 100k "
        "| peak RSS MB | out records / event | out bytes / event | p50 ms | p99 ms |\n"
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    )
    lines = []
    for label, row in rows.items():
        lat = latency.get(label, {}) if row["workers"] == 1 else {}
        lines.append(
            f"| {label} | {row['events']:,} | {_fmt(row['rate_median'])} | {_fmt(row['rate_min'])} "
            f"| {_fmt(row['rate_max'])} | {_fmt(row['cpu_per_100k'], '.1f')} "
            f"| {_fmt(row['broker_cpu_per_100k'], '.1f')} | {_fmt(row['peak_rss_mb'])} "
            f"| {_fmt(row.get('records_per_event'), '.3f')} "
            f"| {_fmt(row.get('bytes_per_event'), ',.1f')} | {_latency_cells(lat)} |"
        )
    for label, lat in latency.items():  # measured for latency only
        if label not in rows:
            lines.append(f"| {label} | - | - | - | - | - | - | - | - | - | {_latency_cells(lat)} |")
    return head + "\n".join(lines)


def _latency_cells(lat: dict[str, Any]) -> str:
    behind = ""  # fell behind the rate: the figure is a lower bound
    if lat.get("sent") and lat.get("processed", 0) < 0.99 * lat["sent"]:
        behind = f" (behind: {lat['processed'] / lat['sent']:.0%} done)"
    return f"{_fmt(lat.get('p50_ms'))} | {_fmt(lat.get('p99_ms'))}{behind}"


_TARGETS = (
    ("insights-min-final", "quix-final", 2.0, "minimal set, emit final ≥ 2x Quix .final()"),
    (
        "insights-min-changes",
        "quix-current",
        1.5,
        "minimal set, emit changes ≥ 1.5x Quix .current()",
    ),
    ("insights-default", "quix-current", 1.0, "default set ≥ Quix .current() on minimal"),
    ("insights-default", "faust-naive", 10.0, "default set ≥ 10x naive Faust"),
    (
        "insights-min-final",
        "raw-aggregate",
        0.5,
        "minimal (final) ≥ 50% of raw consume+aggregate+produce",
    ),
    (
        "insights-min-changes",
        "raw-aggregate",
        0.5,
        "minimal (changes) ≥ 50% of raw consume+aggregate+produce",
    ),
)


def targets(
    rows: dict[str, dict[str, Any]],
    latency: dict[str, dict[str, Any]],
    recovery: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """The issue's targets, as measured in this run (ratios of medians, same broker)."""
    out = []
    for ours, theirs, goal, text in _TARGETS:
        if ours in rows and theirs in rows:
            ratio = rows[ours]["rate_median"] / rows[theirs]["rate_median"]
            out.append({"target": text, "measured": f"{ratio:.2f}x", "met": ratio >= goal})
    for label in [name for name in latency if name.startswith("insights-")]:
        p99 = latency.get(label, {}).get("p99_ms")
        rate = latency.get(label, {}).get("rate")
        if p99 is not None:
            out.append(
                {
                    "target": f"{label}: p99 event→insight ≤ 250 ms at {rate:,.0f}/s",
                    "measured": f"{p99:,.0f} ms",
                    "met": p99 <= 250,
                }
            )
    if recovery and "rss_mb" in recovery:
        out.append(
            {
                "target": f"RSS ≤ 400 MB at {recovery['keys']:,} keys (default windows)",
                "measured": f"{recovery['rss_mb']:,.0f} MB settled"
                + (
                    f" ({recovery['burst_rss_mb']:,.0f} MB right after the burst, "
                    f"peak {recovery['peak_rss_mb']:,.0f} MB; a fresh replica "
                    f"{recovery.get('fresh_rss_mb', 0):,.0f} MB)"
                    if "burst_rss_mb" in recovery
                    else ""
                ),
                "met": recovery["rss_mb"] <= 400,
            }
        )
    if recovery and "state_restored_s" in recovery:
        out.append(
            {
                "target": "recovery ≤ 30 s on a fresh replica",
                "measured": f"{recovery['state_restored_s']:.1f} s",
                "met": recovery["state_restored_s"] <= 30,
            }
        )
    return out
