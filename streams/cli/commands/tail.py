"""`observer-insights tail TOPIC`: print a topic's records readably, one line each."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import click

from streams.cli.commands.common import broker_settings, fail, stop_on_signals
from streams.runtime.settings import Settings

__all__ = ["format_record", "record_field", "tail"]


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode("ascii")


def _parse(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None


def record_field(document: Any, key: bytes | None, name: str) -> Any:
    """`name` (subject_id or metric) of a record: from its JSON value; for a dead letter,
    from the original message it carries; else (subject_id only) the record's key."""
    if isinstance(document, dict):
        if name in document:
            return document[name]
        if "reason" in document and isinstance(document.get("value"), str):
            original = _parse(document["value"].encode())
            if isinstance(original, dict) and name in original:
                return original[name]
    if name == "subject_id" and key is not None:
        return _text(key)
    return None


def format_record(
    partition: int, offset: int, key: bytes | None, value: bytes | None, *, pretty: bool
) -> str:
    """`p<partition>@<offset> <key> <value>`: the value as compact JSON, or indented."""
    head = f"p{partition}@{offset} {_text(key) if key is not None else '-'}"
    document = _parse(value)
    if document is None:
        body = _text(value) or "(no value)"
    elif pretty:
        body = "\n" + json.dumps(document, indent=2, ensure_ascii=False)
    else:
        body = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return f"{head}{body}" if body.startswith("\n") else f"{head} {body}"


async def _tail(
    settings: Settings,
    topic: str,
    *,
    subject: str | None,
    metric: str | None,
    from_beginning: bool,
    max_records: int | None,
    timeout_s: float | None,
    pretty: bool,
) -> tuple[int, int]:
    from aiokafka import AIOKafkaConsumer

    from streams.runtime.kafka import client_options

    consumer = AIOKafkaConsumer(
        **client_options(settings),
        client_id=f"{settings.app_id}-tail",
        group_id=None,  # no group: every partition, no offsets committed
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        isolation_level="read_committed",
    )
    await consumer.start()
    shown = read = 0
    try:
        # Checked first: subscribing to a missing topic would wait for it (or, on brokers
        # that auto-create topics, create it).
        if topic not in await consumer.topics():
            fail(f"tail: topic {topic!r} does not exist", 1)
        consumer.subscribe([topic])
        stop = stop_on_signals()
        last_record = time.monotonic()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            if batch:
                last_record = now
            elif timeout_s is not None and now - last_record >= timeout_s:
                break
            for records in batch.values():
                for record in records:
                    read += 1
                    document = _parse(record.value)
                    if (
                        subject is not None
                        and record_field(document, record.key, "subject_id") != subject
                    ):
                        continue
                    if metric is not None and record_field(document, None, "metric") != metric:
                        continue
                    line = format_record(
                        record.partition, record.offset, record.key, record.value, pretty=pretty
                    )
                    click.echo(line)
                    shown += 1
                    if max_records is not None and shown >= max_records:
                        return shown, read
    finally:
        await consumer.stop()
    return shown, read


@click.command()
@click.argument("topic")
@click.option("--subject", help="Only records of this subject_id.")
@click.option("--metric", help="Only records of this metric.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record, not the end.")
@click.option("--max", "max_records", type=click.IntRange(min=1), help="Stop after N records.")
@click.option(
    "--timeout", type=click.FloatRange(min=0), help="Stop after this many seconds without a record."
)
@click.option("--pretty", is_flag=True, help="Indented JSON instead of one line per record.")
def tail(
    topic: str,
    subject: str | None,
    metric: str | None,
    from_beginning: bool,
    max_records: int | None,
    timeout: float | None,
    pretty: bool,
) -> None:
    """Print TOPIC's records: `p<partition>@<offset> <key> <JSON value>`, one per line.

    Follows the topic until Ctrl-C, --max or --timeout. Dead letters match --subject and
    --metric by the original message they carry. A count goes to stderr at the end.
    """
    from aiokafka.errors import KafkaError

    settings = broker_settings("tail")
    try:
        shown, read = asyncio.run(
            _tail(
                settings,
                topic,
                subject=subject,
                metric=metric,
                from_beginning=from_beginning,
                max_records=max_records,
                timeout_s=timeout,
                pretty=pretty,
            )
        )
    except KafkaError as exc:
        fail(f"tail: Kafka error: {exc!r}", 1)
    click.echo(f"tail: {shown} records shown ({read} read)", err=True)
