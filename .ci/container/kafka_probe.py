"""Kafka side of the container test: a loopback broker, events in, outputs and group checked.

Runs with the project's .venv (aiokafka and the embedded broker come from the dev lock).
Every wait has a deadline; every command exits non-zero with one line on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


def run_broker(args: argparse.Namespace) -> int:
    """Start the embedded broker on loopback, write its address to a file, wait for SIGTERM."""
    from streams.cli.embedded import EmbeddedBroker

    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with EmbeddedBroker(log_path=Path(args.log) if args.log else None) as broker:
        Path(args.address_file).write_text(broker.bootstrap_servers)
        while not stop:
            time.sleep(0.2)
    return 0


def _observation(run: str, n: int) -> dict[str, Any]:
    return {
        "event_id": f"{run}-{n}",
        "observer_id": f"observer-{n % 3}",
        "subject_id": f"subject-{n % 16}",
        "metric": "temp",
        "value": 20.0 + n / 10,
        "observed_at": "2026-11-27T12:00:03.120Z",
    }


async def produce(args: argparse.Namespace) -> int:
    """Send N valid observations and one invalid one (which must become a dead letter)."""
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap)
    await producer.start()
    try:
        futures = [
            await producer.send(
                args.topic,
                key=f"subject-{n % 16}".encode(),
                value=json.dumps(_observation(args.run, n)).encode(),
            )
            for n in range(args.count)
        ]
        bad = {"event_id": f"{args.run}-bad", "value": "hot"}
        futures.append(await producer.send(args.topic, value=json.dumps(bad).encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    print(f"produced {args.count} valid and 1 invalid observation(s) to {args.topic}")
    return 0


async def _read(
    bootstrap: str, topic: str, want: int, run: str, deadline_s: float, until: Any = None
) -> list[Any]:
    """Records holding `run` on `topic`, read from the beginning until `want` of them (or
    `until(records)`) or the deadline."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[Any] = []
    end = time.monotonic() + deadline_s
    try:
        partitions = None
        while not partitions and time.monotonic() < end:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await asyncio.sleep(0.3)
        if not partitions:
            return found
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        done = until or (lambda records: len(records) >= want)
        while not done(found) and time.monotonic() < end:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                found.extend(r for r in records if run.encode() in (r.value or b""))
    finally:
        await consumer.stop()
    return found


# ==============================================================================================
# OUTPUT CHECK — the one place that says what "insights come out" means for the container test.
# "keyed": valid events on `<app id>-observations-by-subject` (all the worker wrote before the
# rolling engine landed). "rolling": window records of this run's subjects on the rolling
# topic (`insights.rolling` by default). Either way the invalid event must be a dead letter.
OUTPUT = "rolling"  # "keyed" | "rolling"
# ==============================================================================================


async def expect(args: argparse.Namespace) -> int:
    """The run's valid events come out on the output topic, its bad one as a dead letter."""
    if OUTPUT == "keyed":
        topic, want = f"{args.app_id}-observations-by-subject", args.count
        records = await _read(args.bootstrap, topic, want, args.run, args.timeout)
        keys = {r.key for r in records}
        ok = len(records) >= want and all(k and k.startswith(b"subject-") for k in keys)
    else:
        topic = args.rolling_topic
        expected = {f"subject-{n % 16}" for n in range(args.count)}
        want = len(expected)

        def subjects(records: list[Any]) -> set[str]:
            return {json.loads(r.value).get("subject_id") for r in records} & expected

        records = await _read(
            args.bootstrap, topic, 0, "subject-", args.timeout, lambda rs: subjects(rs) == expected
        )
        ok = subjects(records) == expected
    if not ok:
        print(f"FAIL: {len(records)} of {want} expected record(s) on {topic}", file=sys.stderr)
        return 1
    print(f"outputs: {len(records)} record(s) on {topic} for the run's {want} subjects/events")
    dead = await _read(args.bootstrap, args.deadletter_topic, 1, f"{args.run}-bad", args.timeout)
    reasons = {json.loads(r.value).get("reason") for r in dead}
    if "invalid" not in reasons:
        print(
            f"FAIL: no dead letter with reason invalid on {args.deadletter_topic}", file=sys.stderr
        )
        return 1
    print(f"dead letters: the invalid event is on {args.deadletter_topic} (reason invalid)")
    return 0


async def group(args: argparse.Namespace) -> int:
    """The consumer group has N members that split the input topic's partitions among them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    end = time.monotonic() + args.timeout
    last = "no description"
    try:
        while time.monotonic() < end:
            described = await admin.describe_consumer_groups([args.group])
            split = _split(described, args.topic)
            last = json.dumps(split, sort_keys=True)
            owned = [p for parts in split.values() for p in parts]
            if args.members_only and len(split) == args.members:
                print(
                    f"group {args.group}: {args.members} members (this broker reports no "
                    f"assignments, so the split is not checked): {last}"
                )
                return 0
            if (
                len(split) == args.members
                and all(split.values())
                and len(owned) == len(set(owned)) == args.partitions
            ):
                print(f"group {args.group}: {args.members} members share {args.topic}: {last}")
                return 0
            await asyncio.sleep(1.0)
    finally:
        await admin.close()
    print(f"FAIL: group {args.group} not split {args.members} ways: {last}", file=sys.stderr)
    return 1


def _split(described: Any, topic: str) -> dict[str, list[int]]:
    """member id -> partitions of `topic`, from the raw DescribeGroups responses."""
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    split: dict[str, list[int]] = {}
    for response in described:
        for grp in response.to_object()["groups"]:
            for member in grp["members"]:
                owned: list[int] = []
                if member["member_assignment"]:
                    assignment = ConsumerProtocolMemberAssignment.decode(
                        member["member_assignment"]
                    )
                    for name, partitions in assignment.assignment:
                        if name == topic:
                            owned.extend(partitions)
                split[member["member_id"]] = sorted(owned)
    return split


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("broker")
    p.add_argument("address_file")
    p.add_argument("--log")
    for name in ("produce", "expect", "group"):
        p = sub.add_parser(name)
        p.add_argument("--bootstrap", required=True)
        p.add_argument("--timeout", type=float, default=60.0)
        if name in ("produce", "expect"):
            p.add_argument("--run", required=True)
            p.add_argument("--count", type=int, default=20)
        if name == "produce":
            p.add_argument("--topic", default="observations")
        if name == "expect":
            p.add_argument("--app-id", required=True)
            p.add_argument("--deadletter-topic", default="observations.deadletter")
            p.add_argument("--rolling-topic", default="insights.rolling")
        if name == "group":
            p.add_argument("--group", required=True)
            p.add_argument("--topic", default="observations")
            p.add_argument("--members", type=int, default=3)
            p.add_argument("--partitions", type=int, default=12)
            p.add_argument("--members-only", action="store_true")
    args = parser.parse_args()
    if args.command == "broker":
        return run_broker(args)
    return asyncio.run({"produce": produce, "expect": expect, "group": group}[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
