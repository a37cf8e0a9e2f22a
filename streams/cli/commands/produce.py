"""`observer-insights produce`: send generated observations to the input topic at a rate."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from models.observation import parse_observed_at
from models.timefmt import format_utc, from_epoch_ms, to_epoch_ms, utc_now
from streams.cli.commands.common import broker_settings, fail, stop_on_signals
from streams.cli.generator import GeneratedEvent, GeneratorConfig, Kind, ObservationGenerator
from streams.runtime.durations import parse_duration
from streams.runtime.settings import Settings

__all__ = ["ProduceReport", "produce"]

_ACK_EVERY = 2_000  # wait for acknowledgements every this many messages
_REFRESH_S = 0.1


@dataclass
class ProduceReport:
    """What was sent, by kind, and how fast: the summary, human and machine-readable."""

    topic: str
    config: GeneratorConfig
    rate_target: float
    sent: Counter[Kind] = field(default_factory=Counter)
    scope_hits: Counter[Kind] = field(default_factory=Counter)
    first_ms: int | None = None
    last_ms: int | None = None
    elapsed_s: float = 0.0
    interrupted: bool = False

    def count(self, event: GeneratedEvent) -> None:
        self.sent[event.kind] += 1
        self.scope_hits[event.kind] += event.scopes
        if event.kind in (Kind.VALID, Kind.SPIKE) and event.observed_ms is not None:
            self.first_ms = event.observed_ms if self.first_ms is None else self.first_ms
            self.last_ms = event.observed_ms

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    @property
    def rate_achieved(self) -> float:
        return self.total / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        c = self.config
        sent = {kind.value: self.sent[kind] for kind in Kind}
        accepted = sent["valid"] + sent["spike"] + sent["duplicate"] + sent["late"]
        return {
            "topic": self.topic,
            "seed": c.seed,
            "total": self.total,
            "sent": sent,
            "elapsed_s": round(self.elapsed_s, 3),
            "rate_target": self.rate_target,
            "rate_achieved": round(self.rate_achieved, 1),
            "interrupted": self.interrupted,
            "subjects": c.subjects,
            "metrics": c.metrics,
            "observers": c.observers,
            "groups": c.groups,
            "drifting_observer": c.drifting_observer,
            "drift_per_hour": c.drift_per_hour,
            "late_by_s": c.late_by_ms / 1000,
            "event_time": {
                "start": format_utc(from_epoch_ms(self.first_ms)) if self.first_ms else None,
                "end": format_utc(from_epoch_ms(self.last_ms)) if self.last_ms else None,
            },
            # What a worker that starts on a fresh topic must count for this run (each
            # duplicate and late event is counted once per scope: subject, and group).
            # Late events are late only once every input partition's watermark has passed
            # their windows: exact for a paced stream, an upper bound for a burst.
            "expected_worker_counts": {
                "events_received": self.total,
                "events_valid": accepted,
                "dead_letters_invalid": sent["invalid"],
                "duplicates": self.scope_hits[Kind.DUPLICATE],
                "late_events": self.scope_hits[Kind.LATE],
            },
        }

    def lines(self) -> list[str]:
        c = self.config
        target = f"{self.rate_target:g}/s" if self.rate_target else "as fast as possible"
        kinds = "  ".join(f"{kind.value} {self.sent[kind]}" for kind in Kind)
        groups = f"{c.groups} groups" if c.groups else "no groups"
        start = format_utc(from_epoch_ms(self.first_ms)) if self.first_ms else "-"
        end = format_utc(from_epoch_ms(self.last_ms)) if self.last_ms else "-"
        return [
            f"produce: sent {self.total} messages to {self.topic} in {self.elapsed_s:.2f} s "
            f"({self.rate_achieved:,.0f}/s; target {target})"
            + (" — interrupted" if self.interrupted else ""),
            f"  {kinds}",
            f"  seed {c.seed}; {c.subjects} subjects, {c.metrics} metrics, {c.observers} "
            f"observers each ({c.drifting_observer} drifts {c.drift_per_hour:+g} sd/h), {groups}",
            f"  event time {start} .. {end}",
        ]


def _parse_start(text: str | None) -> int:
    if text is None:
        return to_epoch_ms(utc_now())
    try:
        moment = parse_observed_at(int(text) if text.lstrip("-").isdigit() else text)
    except (TypeError, ValueError) as exc:
        msg = f"--start: {exc}"
        raise click.BadParameter(msg) from exc
    return to_epoch_ms(moment)


def _duration(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        msg = f"{option}: {exc}"
        raise click.BadParameter(msg) from exc


async def _send(
    settings: Settings,
    topic: str,
    events: Iterator[GeneratedEvent],
    report: ProduceReport,
    *,
    rate: float,
    duration_s: float | None,
    progress: Progress,
    total: int | None,
    create_topics: bool,
) -> None:
    from aiokafka import AIOKafkaProducer

    from streams.runtime.kafka import client_options, ensure_topics

    if create_topics:
        await ensure_topics(settings)
    producer = AIOKafkaProducer(
        **client_options(settings),
        client_id=f"{settings.app_id}-produce",
        acks="all",
        linger_ms=20,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    stop = stop_on_signals()
    task = progress.add_task("produce", total=total, rate=0.0)
    started = time.monotonic()
    try:
        pending: list[asyncio.Future[Any]] = []
        next_refresh = started
        for i, event in enumerate(events):
            now = time.monotonic()
            if stop.is_set() or (duration_s is not None and now - started >= duration_s):
                report.interrupted = stop.is_set()
                break
            if rate > 0:
                delay = started + i / rate - now
                if delay > 0.002:
                    await asyncio.sleep(delay)
            pending.append(await producer.send(topic, value=event.value, key=event.key))
            report.count(event)
            if len(pending) >= _ACK_EVERY:
                await asyncio.gather(*pending)
                pending.clear()
            if now >= next_refresh:
                next_refresh = now + _REFRESH_S
                elapsed = max(now - started, 1e-9)
                progress.update(task, completed=report.total, rate=report.total / elapsed)
        await asyncio.gather(*pending)
    finally:
        report.elapsed_s = time.monotonic() - started
        await producer.stop()
    progress.update(task, completed=report.total, rate=report.rate_achieved)


@click.command()
@click.option("--count", type=click.IntRange(min=1), help="Messages to send (exact shares).")
@click.option("--duration", help="Send for this long (30s, 5m, 1h) instead of a count.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=1000,
    show_default=True,
    help="Target messages per second; 0 sends as fast as possible.",
)
@click.option("--subjects", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--metrics", type=click.IntRange(min=1), default=4, show_default=True)
@click.option(
    "--observers",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Observers per subject; the last one drifts.",
)
@click.option(
    "--groups",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Groups the subjects are spread over (0: no group_id).",
)
@click.option("--seed", type=int, help="Seed of the data (default: random, reported).")
@click.option("--start", help="Event time of the first message (RFC 3339 or epoch ms; now).")
@click.option(
    "--interval", help="Event time between messages (default 1/rate, or 100ms with --rate 0)."
)
@click.option("--invalid-share", type=click.FloatRange(0, 1), default=0.01, show_default=True)
@click.option("--duplicate-share", type=click.FloatRange(0, 1), default=0.01, show_default=True)
@click.option("--late-share", type=click.FloatRange(0, 1), default=0.005, show_default=True)
@click.option("--spike-share", type=click.FloatRange(0, 1), default=0.005, show_default=True)
@click.option("--late-by", default="3h", show_default=True, help="How far back late events are.")
@click.option(
    "--drift",
    type=float,
    default=2.0,
    show_default=True,
    help="Bias growth of the drifting observer, in noise standard deviations per hour.",
)
@click.option("--topic", help="Topic to send to (default: INSIGHTS_INPUT_TOPIC).")
@click.option(
    "--summary-json",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the summary as JSON to this file.",
)
@click.option("--progress/--no-progress", default=True, help="Show the progress bar.")
@click.option(
    "--create-topics/--no-create-topics",
    default=True,
    show_default=True,
    help="Create the app's missing topics first (with INSIGHTS_TOPIC_PARTITIONS).",
)
def produce(
    count: int | None,
    duration: str | None,
    rate: float,
    subjects: int,
    metrics: int,
    observers: int,
    groups: int,
    seed: int | None,
    start: str | None,
    interval: str | None,
    invalid_share: float,
    duplicate_share: float,
    late_share: float,
    spike_share: float,
    late_by: str,
    drift: float,
    topic: str | None,
    summary_json: Path | None,
    progress: bool,
    create_topics: bool,
) -> None:
    """Send realistic generated observations (load generator).

    Subjects report metrics with a daily sine and noise; one observer of each subject drifts;
    a share of values are spikes, and a share of messages are invalid, duplicates or late.
    Stops after --count messages, after --duration, or on Ctrl-C; prints a summary by kind.
    """
    duration_s = _duration(duration, "--duration")
    interval_s = _duration(interval, "--interval")
    late_by_s = _duration(late_by, "--late-by")
    assert late_by_s is not None
    if interval_s is None:
        interval_s = 1.0 / rate if rate > 0 else 0.1
    try:
        config = GeneratorConfig(
            start_ms=_parse_start(start),
            seed=seed if seed is not None else random.SystemRandom().randrange(1 << 31),
            subjects=subjects,
            metrics=metrics,
            observers=observers,
            groups=groups,
            interval_ms=interval_s * 1000,
            invalid_share=invalid_share,
            duplicate_share=duplicate_share,
            late_share=late_share,
            spike_share=spike_share,
            late_by_ms=round(late_by_s * 1000),
            drift_per_hour=drift,
        )
        generator = ObservationGenerator(config, count=count)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    settings = broker_settings("produce")
    target = topic or settings.input_topic
    report = ProduceReport(target, config, rate)
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[bold]produce[/] {task.fields[rate]:>9,.0f}/s"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not progress,
    )
    from aiokafka.errors import KafkaError

    try:
        with bar:
            asyncio.run(
                _send(
                    settings,
                    target,
                    iter(generator),
                    report,
                    rate=rate,
                    duration_s=duration_s,
                    progress=bar,
                    total=count,
                    create_topics=create_topics,
                )
            )
    except KafkaError as exc:
        fail(f"produce: Kafka error after {report.total} messages: {exc!r}", 1)
    for line in report.lines():
        click.echo(line)
    if summary_json is not None:
        summary_json.write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")
