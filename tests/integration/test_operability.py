"""Operability on a real broker: exact metrics and lag, health and readiness, traces through
Kafka, logs without secrets or observation contents, bounded graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_trace_id

from streams.app import create_app
from streams.runtime.kafka import ensure_topics
from streams.runtime.settings import load_settings
from streams.runtime.tracing import Tracing
from tests.support.broker import Broker
from tests.support.kafka_io import create_topic, produce, read_topic
from tests.support.scenario import encode, generate
from tests.support.worker import TopicNames, WorkerProcess, worker_env

pytestmark = pytest.mark.integration


def scrape(worker: WorkerProcess) -> dict[str, float]:
    """Samples by name with labels, e.g. `insights_dead_letters_total{reason="invalid"}`."""
    samples = {}
    for line in worker.metrics().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def wait_for(check: Callable[[], bool], deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_metrics_count_exactly_and_lag_returns_to_zero(
    broker: Broker,
    names: TopicNames,
    start_worker: Callable[..., WorkerProcess],
    observation_factory: Callable[..., dict[str, Any]],
) -> None:
    worker = start_worker(INSIGHTS_IDLE_TIMEOUT="1h")
    worker.wait_ready()
    valid = [observation_factory(subject_id=f"s-{i % 7}", value=float(i)) for i in range(300)]
    grouped = [observation_factory(subject_id="s-g", group_id="g-1") for _ in range(20)]
    duplicates = valid[:40] + grouped[:5]  # the grouped ones are duplicates in two scopes
    invalid = [b"not json", b"[]", json.dumps({**valid[0], "value": "1"}).encode()]
    oversized = [json.dumps({**valid[1], "attributes": {"x": "y" * 70_000}}).encode()]
    messages = [(None, json.dumps(v).encode()) for v in valid + grouped + duplicates] + [
        (None, raw) for raw in invalid + oversized
    ]
    await produce(broker.bootstrap_servers, names.input, messages)

    expected = {
        "insights_events_received_total": float(len(messages)),
        "insights_events_valid_total": float(len(valid) + len(grouped) + len(duplicates)),
        'insights_dead_letters_total{reason="undecodable"}': 1.0,
        'insights_dead_letters_total{reason="invalid"}': 2.0,
        'insights_dead_letters_total{reason="too_large"}': 1.0,
        "insights_duplicates_total": float(40 + 5 * 2),
    }

    def counted() -> bool:
        samples = scrape(worker)
        lags = {k: v for k, v in samples.items() if k.startswith("insights_consumer_lag{")}
        return (
            all(samples.get(k) == v for k, v in expected.items())
            and samples.get('insights_state_keys{table="rolling-state"}', 0) > 0
            and any(names.input in k for k in lags)
            and any(names.keyed in k for k in lags)
            and set(lags.values()) == {0.0}
        )

    await wait_for(counted, 60, "exact counters and zero lag")
    samples = scrape(worker)
    for name, value in expected.items():
        assert samples[name] == value, name
    lags = {k: v for k, v in samples.items() if k.startswith("insights_consumer_lag{")}
    assert any(names.input in k for k in lags) and any(names.keyed in k for k in lags)
    assert set(lags.values()) == {0.0}
    assert samples[f'insights_assigned_partitions{{topic="{names.input}"}}'] == 4.0
    assert samples["insights_ready"] == 1.0
    assert samples["insights_event_to_insight_seconds_count"] > 0
    assert samples['insights_batch_processing_seconds_count{agent="ingest"}'] > 0
    assert samples['insights_state_keys{table="rolling-state"}'] > 0
    assert any(k.startswith("insights_build_info{") for k in samples)
    assert worker.stop() == 0


async def test_readyz_waits_for_assignment_and_healthz_answers_throughout(
    names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker()
    seen: list[tuple[int, int, str]] = []
    end = time.monotonic() + 90
    while time.monotonic() < end:
        ready, body = worker.http("/readyz")
        alive, _ = worker.http("/healthz")
        seen.append((ready, alive, body.decode(errors="replace")))
        if ready == 200:
            break
        await asyncio.sleep(0.05)
    assert seen[-1][0] == 200, seen[-5:]
    not_ready = [s for s in seen if s[0] == 503]
    assert not_ready, "never observed the not-ready state"
    assert all(alive == 200 for _, alive, _ in not_ready)  # alive while not ready
    assert any("waiting for partition assignment" in body for _, _, body in not_ready)
    assert json.loads(seen[-1][2]) == {"status": "ready"}
    assert worker.stop() == 0


async def test_trace_continues_from_input_headers_to_the_insight(
    broker: Broker, names: TopicNames, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    env = worker_env(broker.bootstrap_servers, names, tmp_path, INSIGHTS_FLUSH_INTERVAL="200ms")
    settings = load_settings(env)
    await ensure_topics(settings)
    insights = create_app(settings, tracing=Tracing(provider))
    app = insights.app
    await app.start()
    try:
        producer_tracer = provider.get_tracer("test-producer")
        with producer_tracer.start_as_current_span("produce", kind=SpanKind.PRODUCER) as root:
            headers = Tracing.inject()
        trace_id = root.get_span_context().trace_id
        event = generate(seed=9, n=1).events[0]
        await produce(
            broker.bootstrap_servers, names.input, [(b"k", encode(event))], headers=headers
        )
        records = await read_topic(
            broker.bootstrap_servers, names.rolling, until=lambda r: len(r) >= 1
        )
    finally:
        await app.stop()
    assert records, "no insight arrived"
    traceparent = dict(records[0].headers)["traceparent"].decode()
    assert traceparent.split("-")[1] == format_trace_id(trace_id)

    spans = exporter.get_finished_spans()
    assert {s.context.trace_id for s in spans} == {trace_id}  # one trace
    [ingest] = [s for s in spans if s.name == "observations process"]
    publishes = [s for s in spans if s.name == "insights.rolling publish"]
    assert ingest.parent is not None and ingest.parent.span_id == root.get_span_context().span_id
    assert publishes and all(
        p.parent is not None and p.parent.span_id == ingest.context.span_id for p in publishes
    )
    assert ingest.attributes is not None
    assert ingest.attributes["messaging.system"] == "kafka"
    assert ingest.attributes["messaging.destination.name"] == names.input
    # The insight's header names the publish span that sent it.
    assert traceparent.split("-")[2] in {format(p.context.span_id, "016x") for p in publishes}


async def test_logs_hold_no_secret_and_no_observation_contents(
    broker: Broker,
    names: TopicNames,
    start_worker: Callable[..., WorkerProcess],
    observation_factory: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    password_marker = "pw-MARKER-7f3a9c"
    file_marker = "file-MARKER-91be2d"
    value_marker = 918273.645
    attribute_marker = "attr-MARKER-55aa"
    secret_file = tmp_path / "username"
    secret_file.write_text(file_marker + "\n")
    worker = start_worker(
        KAFKA_SASL_PASSWORD=password_marker,
        KAFKA_SASL_USERNAME_FILE=str(secret_file),
        INSIGHTS_LOG_LEVEL="info",
    )
    worker.wait_ready()
    good = observation_factory(value=value_marker, attributes={"note": attribute_marker})
    bad = {**good, "value": attribute_marker}  # invalid: its value is the marker string
    await produce(
        broker.bootstrap_servers,
        names.input,
        [(None, json.dumps(good).encode()), (None, json.dumps(bad).encode())],
    )
    await read_topic(broker.bootstrap_servers, names.deadletter, until=lambda r: len(r) >= 1)
    await read_topic(broker.bootstrap_servers, names.rolling, until=lambda r: len(r) >= 1)
    assert worker.stop() == 0
    text = worker.log_path.read_text(encoding="utf-8")
    assert '"dead_letter"' in text  # the bad event was logged, without its contents
    for marker in (password_marker, file_marker, attribute_marker, str(value_marker)):
        assert marker not in text, f"{marker} leaked into the log"
    for line in text.splitlines():
        json.loads(line)  # every line is one JSON event


async def test_sigterm_midstream_exits_0_within_the_bound(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    await create_topic(broker.bootstrap_servers, names.input, 4)
    worker = start_worker(INSIGHTS_SHUTDOWN_TIMEOUT="15s")
    worker.wait_ready()
    scenario = generate(seed=11, n=3000)
    sending = asyncio.ensure_future(
        produce(broker.bootstrap_servers, names.input, scenario.payloads())
    )
    await wait_for(lambda: scrape(worker).get("insights_events_received_total", 0) > 0, 30, "input")
    started = time.monotonic()
    code = worker.stop(signal.SIGTERM, deadline_s=30)
    took = time.monotonic() - started
    await sending
    assert code == 0
    assert took < 15, f"stop took {took:.1f}s"
    events = [line.get("event") for line in worker.log_lines()]
    assert "shutdown_started" in events and "worker_stopped" in events


async def test_second_signal_exits_at_once(
    names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker(INSIGHTS_SHUTDOWN_TIMEOUT="60s")
    worker.wait_ready()
    worker.process.send_signal(signal.SIGTERM)
    await wait_for(
        lambda: any(line.get("event") == "shutdown_started" for line in worker.log_lines()),
        10,
        "stop",
    )
    worker.process.send_signal(signal.SIGTERM)
    assert worker.stop(deadline_s=5) == 128 + signal.SIGTERM.value
