"""Fault and scale tests: a real Apache Kafka of their own, fleets of real workers, the
group's assignment as the broker sees it, and scenarios spread over every partition."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import random
import re
import shutil
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocol
from aiokafka.partitioner import DefaultPartitioner

from agents.rolling.aggregate import Aggregate, OneValue
from agents.rolling.changelog import JournalRecord, Kind, PanesRecord, decode
from streams.runtime.windows import parse_windows
from tests.support.broker import Broker
from tests.support.finals import assert_exact
from tests.support.kafka_io import backlog, produce, read_topic
from tests.support.kafka_server import REPO, KafkaServer
from tests.support.scenario import BASE_MS, Scenario
from tests.support.truth import Event
from tests.support.worker import TopicNames, WorkerProcess, worker_env

PARTITIONS = 12
SPECS = parse_windows("tumbling:60s,hopping:300s/60s")
# Every window stays open until the flushers: workers progress unevenly through a fault, so
# group records (from many input partitions) may arrive minutes of event time apart.
FLEET_ENV = {
    "INSIGHTS_TOPIC_PARTITIONS": str(PARTITIONS),
    "INSIGHTS_GRACE": "30m",  # longer than any scenario here; the flushers are 1 h later
    "INSIGHTS_IDLE_TIMEOUT": "1h",
    "INSIGHTS_SESSION_TIMEOUT": "6s",
}
_partitioner = DefaultPartitioner()


def partition_of(key: bytes, partitions: int = PARTITIONS) -> int:
    """The partition the default (murmur2) partitioner picks, as Faust's producer does."""
    every = list(range(partitions))
    return int(_partitioner(key, every, every))


# -- brokers --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A plaintext Apache Kafka 4.1 of the fault tests' own (transactions work on it)."""
    server = KafkaServer(tmp_path_factory.mktemp("kafka-faults") / "run")
    server.start()
    try:
        yield server.broker()
    finally:
        server.destroy()


# -- workers --------------------------------------------------------------------------------


@dataclass
class Fleet:
    """Real worker processes of one test, on one broker, in one consumer group."""

    broker: Broker
    names: TopicNames
    tmp_path: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)

    def start(self, **overrides: str) -> WorkerProcess:
        index = len(self.workers)
        env = worker_env(
            self.broker.bootstrap_servers,
            self.names,
            self.tmp_path / f"data-{index}",
            **{**self.env, **overrides},
        )
        worker = WorkerProcess(env, self.tmp_path / f"worker-{index}.log")
        self.workers.append(worker)
        return worker

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.process.poll() is None]

    def dump_stacks(self) -> None:
        """Have every live worker write its asyncio tasks' stacks to its log (SIGUSR1), so
        a failed test's logs show what each worker was waiting for."""
        alive = self.alive()
        for worker in alive:
            worker.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5.0
        for worker in alive:
            while time.monotonic() < deadline and "THREAD " not in _tail(worker.log_path):
                time.sleep(0.1)

    def stop_all(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(AssertionError):
                worker.stop()
            if worker.process.poll() is None:
                worker.process.kill()

    def all_log_lines(self) -> list[str]:
        lines = []
        for worker in self.workers:
            lines.extend(worker.log_path.read_text(encoding="utf-8", errors="replace").splitlines())
        return lines


@pytest.fixture
def fleet_factory(
    request: pytest.FixtureRequest, names: TopicNames, tmp_path: Path
) -> Iterator[Callable[..., Fleet]]:
    """`fleet_factory(broker, **env)`: a fleet on that broker; every worker stopped at the end."""
    made: list[Fleet] = []

    def make(broker: Broker, **env: str) -> Fleet:
        fleet = Fleet(broker, names, tmp_path, {**FLEET_ENV, **env})
        made.append(fleet)
        return fleet

    yield make
    failed = getattr(request.node, "failed_call", False)
    for fleet in made:
        if failed:
            fleet.dump_stacks()
        fleet.stop_all()
    if failed:
        _keep_logs(request.node.nodeid, made)


FAILED_LOGS = REPO / ".ci" / "artifacts" / "failed-fault-tests"


def _keep_logs(nodeid: str, fleets: Sequence[Fleet]) -> None:
    """Copy a failed test's worker logs out of pytest's temporary dirs (it keeps only the
    last three sessions'), so a rare failure can be read after the run."""
    target = FAILED_LOGS / re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid)
    target.mkdir(parents=True, exist_ok=True)
    for fleet_index, fleet in enumerate(fleets):
        for worker_index, worker in enumerate(fleet.workers):
            if worker.log_path.exists():
                name = f"fleet{fleet_index}-worker{worker_index}.log"
                shutil.copy(worker.log_path, target / name)
    print(f"\nworker logs of the failed test kept in {target}")  # noqa: T201


def _tail(path: Path, size: int = 65536) -> str:
    with path.open("rb") as file:
        file.seek(max(0, path.stat().st_size - size))
        return file.read().decode("utf-8", errors="replace")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Mark a test whose body failed (`item.failed_call`), for the fleet's teardown."""
    report = yield
    if report.when == "call" and report.failed:
        item.failed_call = True  # type: ignore[attr-defined]
    return report


def wait_all_ready(workers: Sequence[WorkerProcess], deadline_s: float = 120.0) -> None:
    for worker in workers:
        worker.wait_ready(deadline_s)


def metric(worker: WorkerProcess, name: str) -> float:
    """A counter's value (sum over its labels) from the worker's /metrics; 0 if absent."""
    status, body = worker.http("/metrics", port=worker.metrics_port)
    if status != 200:
        return 0.0
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith((name + " ", name + "{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def poll(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    deadline_s: float,
    what: str,
    period_s: float = 0.2,
) -> float:
    """Poll until `check()` is true; returns the seconds it took, fails at the deadline."""
    began = time.monotonic()
    while True:
        if inspect.iscoroutinefunction(check):
            result = await check()
        else:  # blocking checks (HTTP) in a thread: background tasks keep running
            result = await asyncio.to_thread(check)
        if result:
            return time.monotonic() - began
        if time.monotonic() - began > deadline_s:
            msg = f"{what}: not within {deadline_s}s"
            raise AssertionError(msg)
        await asyncio.sleep(period_s)


# -- the group as the broker sees it --------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One group member: its web port (from Faust's metadata), active and standby partitions
    (standbys only from `describe_group`)."""

    member_id: str
    web_port: int
    actives: dict[str, frozenset[int]]
    standbys: dict[str, frozenset[int]]


async def describe_group(bootstrap: str, group: str) -> tuple[str, list[Member]]:
    """The group's state and members, decoded from DescribeGroups (Faust's assignor data)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = (await admin.describe_consumer_groups([group]))[0]
    finally:
        await admin.close()
    _error, _group, state, _ptype, _protocol, raw_members = response.groups[0][:6]
    members = []
    for member_id, _client, _host, metadata, assignment in raw_members[:]:
        if not metadata or not assignment:
            continue
        meta = ConsumerProtocol.METADATA.decode(metadata)
        client = json.loads(meta.user_data)
        port = int(client["url"].rsplit(":", 1)[1].strip("/"))
        assigned = json.loads(ConsumerProtocol.ASSIGNMENT.decode(assignment).user_data)
        members.append(
            Member(
                member_id,
                port,
                {t: frozenset(p) for t, p in assigned["actives"].items()},
                {t: frozenset(p) for t, p in assigned.get("standbys", {}).items()},
            )
        )
    return state, members


def assignment_view(worker: WorkerProcess) -> list[Member] | None:
    """The group's active assignment as this worker knows it (Faust's `/router/topics`,
    which every member gets from the leader; works on brokers whose DescribeGroups does not
    return member data, like the embedded one)."""
    status, body = worker.http("/router/topics")
    if status != 200:
        return None
    members = []
    for url, topics in json.loads(body).items():
        port = int(url.rsplit(":", 1)[1].strip("/"))
        actives = {t: frozenset(p) for t, p in topics.items() if "__assignor" not in t}
        members.append(Member("", port, actives, {}))
    return sorted(members, key=lambda m: m.web_port)


async def wait_group(workers: Sequence[WorkerProcess], deadline_s: float = 120.0) -> list[Member]:
    """Wait until exactly `workers` form the group: each is ready and each reports the same
    assignment, whose members are these workers."""
    found: list[Member] = []
    ports = {w.web_port for w in workers}
    last: list[str] = []

    def settled() -> bool:
        nonlocal found
        views = []
        last.clear()
        for worker in workers:
            status, body = worker.http("/readyz")
            view = assignment_view(worker)
            last.append(f":{worker.web_port} readyz {status} {body[:120]!r} view {view}")
            if status != 200:
                return False
            views.append(view)
        if any(v is None or v != views[0] for v in views):
            return False
        found = views[0] or []
        return {m.web_port for m in found} == ports

    try:
        await poll(settled, deadline_s, f"group of workers on {sorted(ports)}", period_s=0.3)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen:\n" + "\n".join(last)) from None
    return found


def assert_spread(members: Sequence[Member], topic: str, partitions: int = PARTITIONS) -> None:
    """Every partition of `topic` is active on exactly one member; shares differ by <= 1."""
    owned = [m.actives.get(topic, frozenset()) for m in members]
    flat = [p for share in owned for p in share]
    assert sorted(flat) == list(range(partitions)), f"{topic}: {owned}"
    sizes = [len(share) for share in owned]
    assert max(sizes) - min(sizes) <= 1, f"{topic}: uneven {sizes}"


# -- scenarios over every partition ---------------------------------------------------------


def spread_subjects(per_partition: int = 3, partitions: int = PARTITIONS) -> list[str]:
    """Subject ids chosen so that each partition holds `per_partition` of them."""
    chosen: dict[int, list[str]] = {p: [] for p in range(partitions)}
    i = 0
    while any(len(v) < per_partition for v in chosen.values()):
        subject = f"s-{i}"
        p = partition_of(subject.encode(), partitions)
        if len(chosen[p]) < per_partition:
            chosen[p].append(subject)
        i += 1
    return [s for share in chosen.values() for s in share]


def spread_scenario(seed: int, n: int, *, duplicate_share: float = 0.05) -> Scenario:
    """`n` events over every partition (3 subjects each, 2 groups), some sent twice."""
    rng = random.Random(seed)
    subjects = spread_subjects()
    groups = {s: (None if i % 3 == 2 else f"g-{i % 2}") for i, s in enumerate(subjects)}
    events: list[Event] = []
    clock = BASE_MS
    for i in range(n):
        clock += rng.randint(0, 400)
        subject = rng.choice(subjects)
        events.append(
            Event(
                f"evt-{seed}-{i}",
                rng.choice(["o1", "o2", "o3"]),
                subject,
                rng.choice(["temp", "humidity"]),
                round(rng.gauss(50, 12), 4),
                clock - rng.randint(0, 20_000),
                groups[subject],
            )
        )
        if rng.random() < duplicate_share:
            events.append(rng.choice(events))
    return Scenario(events, [])


async def produce_paced(
    bootstrap: str,
    topic: str,
    messages: Sequence[tuple[bytes, bytes]],
    *,
    chunk: int = 50,
    period_s: float = 0.1,
) -> None:
    """Send in chunks with a pause between, so the stream is still flowing during a fault."""
    for start in range(0, len(messages), chunk):
        await produce(bootstrap, topic, messages[start : start + chunk])
        await asyncio.sleep(period_s)


async def end_offsets(bootstrap: str, topic: str, deadline_s: float = 30.0) -> dict[int, int]:
    """Each partition's last stable offset as fetch responses report it (the embedded
    broker's ListOffsets undercounts batched records)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            await consumer.getmany(timeout_ms=200)
            marks = {tp.partition: consumer.last_stable_offset(tp) for tp in tps}
            positions = {tp.partition: await consumer.position(tp) for tp in tps}
            if all(m is not None and positions[p] >= m for p, m in marks.items()):
                return {p: int(m or 0) for p, m in marks.items()}
        msg = f"could not read {topic} to its end within {deadline_s}s"
        raise AssertionError(msg)
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topic: str) -> list[ConsumerRecord[Any, Any]]:
    """Every committed record of `topic` now, read to each partition's end (fetch-based)."""
    total = sum((await end_offsets(bootstrap, topic)).values())
    return await read_topic(bootstrap, topic, until=lambda r: len(r) >= total, deadline_s=30.0)


async def drain_then_flush(broker: Broker, names: TopicNames, scenario: Scenario) -> None:
    """`wait_drained`, then send the flushers that close every window, so no record still
    on its way lands behind them. (An at-least-once replay that does is a duplicate of a
    record already counted: it becomes a `late` dead letter and changes no final.)"""
    await wait_drained(broker, names)
    await produce(broker.bootstrap_servers, names.input, scenario.flushers())
    for partition, event in scenario.source_flushers(PARTITIONS):
        await produce(broker.bootstrap_servers, names.input, [(None, event)], partition=partition)


async def wait_drained(broker: Broker, names: TopicNames) -> None:
    """Wait until the group has processed and committed every record of the input and the
    keyed topic (no backlog on either, twice in a row). Both topics, because a record
    either is folded in where it was read (co-partitioned, keyed to its own partition) or
    crosses the keyed topic."""
    bootstrap = broker.bootstrap_servers
    last: tuple[int, int] | None = None

    async def drained() -> bool:
        nonlocal last
        now = (
            await backlog(bootstrap, names.app_id, names.input),
            await backlog(bootstrap, names.app_id, names.keyed),
        )
        settled = now == last == (0, 0)
        last = now
        return settled

    await poll(drained, 300.0, "input and keyed topic drained", period_s=1.5)


def assert_nothing_lost(finals: dict[Any, list[dict[str, Any]]], expected: dict[Any, Any]) -> bool:
    """Every window has a final counting at least its events; returns whether all are exact."""
    missing = set(expected) - set(finals)
    assert not missing, f"{len(missing)} windows without a final, e.g. {sorted(missing)[:3]}"
    extra = set(finals) - set(expected)
    assert not extra, f"{len(extra)} finals for windows without data, e.g. {sorted(extra)[:3]}"
    short = {
        key: (min(r["count"] for r in records), expected[key]["count"])
        for key, records in finals.items()
        if any(r["count"] < expected[key]["count"] for r in records)
    }
    assert not short, f"events lost in {len(short)} windows (found, expected): {short}"
    return all(
        len(records) == 1 and records[0]["count"] == expected[key]["count"]
        for key, records in finals.items()
    )


# -- watching an output topic ---------------------------------------------------------------


@dataclass
class Tail:
    """Records of a topic as they become visible (read_committed), with arrival times."""

    records: list[tuple[float, ConsumerRecord[Any, Any]]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def tail_topic(bootstrap: str, topic: str) -> AsyncIterator[Tail]:
    """Follow `topic` from its beginning in the background while the block runs."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    tail = Tail()
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)

    async def follow() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for part in batch.values():
                tail.records.extend((now, r) for r in part)

    task = asyncio.create_task(follow())
    try:
        yield tail
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await consumer.stop()


def kill(worker: WorkerProcess) -> None:
    """kill -9, and wait for the process to be gone."""
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(timeout=10)


def write_result(name: str, figures: dict[str, object]) -> None:
    """Keep measured figures under bench/results/ (git-ignored) for the report."""
    folder = Path(__file__).resolve().parents[3] / "bench" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


async def assert_exact_explained(
    broker: Broker,
    names: TopicNames,
    scenario: Scenario,
    finals: dict[Any, list[dict[str, Any]]],
    expected: dict[Any, Any],
) -> None:
    """`assert_exact`; when it fails, the message also says where the missing events were
    lost (`explain_shortfall`)."""
    try:
        assert_exact(finals, expected)
    except AssertionError as exc:
        where = await explain_shortfall(broker, names, scenario, finals, expected)
        raise AssertionError(f"{exc}; {where}") from exc


async def explain_shortfall(
    broker: Broker,
    names: TopicNames,
    scenario: Scenario,
    finals: dict[Any, list[dict[str, Any]]],
    expected: dict[Any, Any],
) -> str:
    """For windows whose final counts fewer events than ground truth: which of their events
    the keyed topic holds (committed, or only in aborted transactions), and where in the
    input the others are. Tells a record lost before the keyed hop from one lost after."""
    short = [
        key
        for key, records in finals.items()
        if key in expected and any(r["count"] < expected[key]["count"] for r in records)
    ]
    if not short:
        return "no window is short"
    bootstrap = broker.bootstrap_servers

    def nothing(_: list[Any]) -> bool:
        return False

    keyed: dict[str, dict[tuple[str, str, str, str], list[tuple[int, int]]]] = {}
    for isolation in ("read_committed", "read_uncommitted"):
        found: dict[tuple[str, str, str, str], list[tuple[int, int]]] = {}
        records = await read_topic(
            bootstrap, names.keyed, until=nothing, deadline_s=8.0, isolation_level=isolation
        )
        for message in records:
            for item in json.loads(message.value):
                scope, entity, event_id, metric = item[0], item[1], item[2], item[6]
                found.setdefault((scope, entity, metric, event_id), []).append(
                    (message.partition, message.offset)
                )
        keyed[isolation] = found
    inputs: dict[str, tuple[int, int]] = {}
    for message in await read_topic(bootstrap, names.input, until=nothing, deadline_s=8.0):
        event_id = json.loads(message.value)["event_id"]
        inputs.setdefault(event_id, (message.partition, message.offset))
    dead: dict[str, str] = {}  # event id -> dead-letter reason
    reasons: Counter[str] = Counter()
    for message in await read_topic(bootstrap, names.deadletter, until=nothing, deadline_s=5.0):
        letter = json.loads(message.value)
        reasons[letter.get("reason")] += 1
        with contextlib.suppress(TypeError, ValueError, KeyError):
            dead[json.loads(letter["value"])["event_id"]] = letter["reason"]
    changelog = {
        isolation: await read_topic(
            bootstrap,
            f"{names.app_id}-rolling-state-changelog",
            until=nothing,
            deadline_s=8.0,
            isolation_level=isolation,
        )
        for isolation in ("read_committed", "read_uncommitted")
    }
    lines = []
    for key in short[:3]:
        scope, entity, metric, _, start, end = key
        ids = sorted(
            {
                e.event_id
                for e in scenario.events
                if e.metric == metric
                and start <= e.observed_ms < end
                and (e.subject_id if scope == "subject" else e.group_id) == entity
            }
        )
        committed = [i for i in ids if (scope, entity, metric, i) in keyed["read_committed"]]
        aborted_only = [
            i
            for i in ids
            if (scope, entity, metric, i) in keyed["read_uncommitted"] and i not in committed
        ]
        absent = [i for i in ids if i not in committed and i not in aborted_only]
        lines.append(
            f"{key}: final {min(r['count'] for r in finals[key])} of {len(ids)}; in the keyed "
            f"topic committed {len(committed)}, only in aborted transactions "
            f"{[(i, inputs.get(i)) for i in aborted_only][:10]}, not at all (input partition, "
            f"offset) {[(i, inputs.get(i)) for i in absent][:10]}; dead letters among them "
            f"{[(i, dead[i]) for i in ids if i in dead][:10]}; "
            + _changelog_history(
                changelog,
                key,
                {
                    i: (inputs.get(i), keyed["read_committed"].get((scope, entity, metric, i)))
                    for i in ids
                },
            )
        )
    return f"dead letters by reason: {dict(reasons)}; {len(short)} windows short; " + "; ".join(
        lines
    )


def _changelog_history(
    changelog: dict[str, list[Any]], key: tuple[Any, ...], sources: dict[str, Any]
) -> str:
    """How the state of one short window went in the rolling-state changelog (its records
    per isolation level): the window's count at each committed write of its key (and the
    aborted ones), and which of its events the dedup journal holds. A count that goes down
    is state that went back; an event the journal never held was never counted (its input
    and keyed positions are given: `sources` maps each event id to them)."""
    ids = sorted(sources)
    scope, entity, metric, _, start, end = key
    partition = partition_of(entity.encode() if scope == "subject" else f"group:{entity}".encode())
    prefix = f"{partition}|".encode()
    name = json.dumps(["a", scope, entity, metric], separators=(",", ":"))  # as orjson writes
    aggregate_key = prefix + name.encode()
    journal_prefix = prefix + b'["d",'
    dedup_keys = {scope[0] + event_id for event_id in ids}
    parts = []
    for isolation, records in changelog.items():
        counts: list[tuple[int, int]] = []
        journaled: set[str] = set()
        for message in records:
            if message.partition != partition or message.value is None:
                continue
            if message.key == aggregate_key:
                record = decode(Kind.PANES, message.value, Aggregate)
                assert isinstance(record, PanesRecord)
                count = sum(
                    1 if isinstance(a, OneValue) else a.count
                    for p, a in record.panes.items()
                    if start <= p < end
                )
                if not counts or counts[-1][1] != count:
                    counts.append((message.offset, count))
            elif message.key is not None and message.key.startswith(journal_prefix):
                chunk = decode(Kind.JOURNAL, message.value, Aggregate)
                assert isinstance(chunk, JournalRecord)
                journaled.update(k for k in chunk.ids if k in dedup_keys)
        never = [(i, *sources[i]) for i in ids if scope[0] + i not in journaled]
        parts.append(
            f"changelog {isolation}: partition {partition}, (offset, window count) "
            f"{counts[-12:]}, events in the dedup journal {len(journaled)} of {len(ids)}, "
            f"never journaled (id, input position, keyed positions) {never[:5]}"
        )
    return "; ".join(parts)
