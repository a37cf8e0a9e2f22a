"""A source's progress never reaches a keyed partition before the records that made it:
while a batch folds its own-partition records in locally (which yields), the timer's
report of that batch's progress must wait, or at the other keyed partition it closes the
windows of the batch's records, still to be sent, early (the records then miss them)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.types import TP

import agents.ingest as ingest_module
from agents.ingest import Ingest
from agents.source_progress import SourceProgress
from models.keyed import Chunk, SourceReport, decode_envelope

OBSERVED_MS = 1_795_780_800_000


class _Counter:
    def inc(self, amount: float = 1) -> None:
        pass

    def labels(self, **labels: str) -> _Counter:
        return self

    def observe(self, value: float) -> None:
        pass


class _SlowFolder:
    """The local fold of the direct path: holds until released, as a flush awaiting
    Kafka does."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def fold(self, partition: int, chunks: list[Chunk], *, defer: bool = False) -> bool:
        self.entered.set()
        await self.release.wait()
        return True

    async def observe(self, partition: int, report: SourceReport) -> bool:
        return True

    def when_durable(self, partition: int, callback: Any) -> bool:
        return False


def _ingest(monkeypatch: pytest.MonkeyPatch, sent: list[tuple[int, bytes]]) -> Ingest:
    """Input of 2 partitions co-partitioned with a keyed topic of 2: a subject's records
    fold in where they were read (partition 0), its group's go to keyed partition 1."""

    async def send_caused_by(app: Any, topic: str, key: Any, value: bytes, **kw: Any) -> Any:
        sent.append((kw["partition"], value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def key_partition(app: Any, topic: str, key: bytes) -> int:
        return 1 if key.startswith(b"group:") else 0

    monkeypatch.setattr(ingest_module, "send_caused_by", send_caused_by)
    monkeypatch.setattr(ingest_module, "key_partition", key_partition)
    monkeypatch.setattr(ingest_module, "copartitioned", lambda app, a, b: True)
    monkeypatch.setattr(ingest_module, "partition_count", lambda app, topic: 2)
    monkeypatch.setattr(ingest_module, "paused_partitions", lambda app: set())
    monkeypatch.setattr(ingest_module, "fetch_state", lambda app, tp: (1, 1, None))
    ingest: Any = Ingest.__new__(Ingest)  # its collaborators faked
    tp = TP("observations", 0)
    recovered = SimpleNamespace(completed=SimpleNamespace(is_set=lambda: True))
    ingest.app = SimpleNamespace(
        rebalancing=False,
        tables=SimpleNamespace(recovery=recovered),
        consumer=SimpleNamespace(flow_active=True, assignment=lambda: [tp]),
    )
    ingest.lane = None
    ingest.max_bytes, ingest.max_future_s, ingest.earliest_ms = 65_536, 600.0, -(2**62)
    ingest.progress = SourceProgress(2, idle_timeout_s=60.0)
    ingest.input_topic, ingest.keyed_topic = "observations", "keyed"
    counter = _Counter()
    ingest.metrics = SimpleNamespace(
        events_received=counter, events_valid=counter, batch_seconds=counter
    )
    ingest.sink = SimpleNamespace()
    ingest.tracing = SimpleNamespace(enabled=False)
    ingest._reporting = asyncio.Lock()
    return cast(Ingest, ingest)


def _message(offset: int) -> SimpleNamespace:
    value = {
        "event_id": f"e-{offset}",
        "observer_id": "o1",
        "subject_id": "s-1",
        "group_id": "g-1",
        "metric": "temp",
        "value": 1.5,
        "observed_at": OBSERVED_MS + offset,
    }
    return SimpleNamespace(
        topic="observations",
        partition=0,
        offset=offset,
        timestamp=0,
        value=json.dumps(value).encode(),
        headers=(),
    )


async def test_the_timers_report_waits_for_the_batchs_keyed_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[tuple[int, bytes]] = []
    ingest = _ingest(monkeypatch, sent)
    folder = ingest.local = _SlowFolder()

    batch = asyncio.create_task(ingest.process([_message(0), _message(1)]))
    await asyncio.wait_for(folder.entered.wait(), 5)  # progress taken, local fold under way
    tick = asyncio.create_task(ingest.tick())
    for _ in range(20):  # let the timer run as far as it can while the fold holds
        await asyncio.sleep(0)
    folder.release.set()
    await asyncio.wait_for(asyncio.gather(batch, tick), 5)

    to_group = [decode_envelope(value) for partition, value in sent if partition == 1]
    assert to_group, "the batch's group records were never sent"
    records, report = to_group[0]
    assert [r.event_id for r, _ in records] == ["e-0", "e-1"]  # the records come first
    assert report == SourceReport(0, OBSERVED_MS + 1, 2)  # with the progress they made
    for later_records, later in to_group[1:]:  # anything after: no records, no new mark
        assert later_records == [] and later is not None
        assert later.watermark_ms == OBSERVED_MS + 1
