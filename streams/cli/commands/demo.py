"""`observer-insights demo`: embedded broker, a worker, the load generator and a live view."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import click
import orjson
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from streams.cli.commands.common import fail, stop_on_signals
from streams.cli.embedded import EmbeddedBroker, free_port
from streams.cli.generator import GeneratorConfig, ObservationGenerator
from streams.runtime.errors import ConfigError, EmbeddedBrokerError
from streams.runtime.settings import Settings, load_settings

__all__ = ["demo"]

# Short windows so that finals, consensus and anomalies show within a minute.
DEMO_ENV: Final = {
    "INSIGHTS_WINDOWS": "tumbling:10s,hopping:30s/10s",
    "INSIGHTS_GRACE": "2s",
    "INSIGHTS_IDLE_TIMEOUT": "15s",
    "INSIGHTS_ANOMALY_WARMUP": "10",
    "INSIGHTS_ANOMALY_COOLDOWN": "10s",
    "INSIGHTS_TOPIC_PARTITIONS": "4",
    "INSIGHTS_LOG_FORMAT": "json",
}
_STOP_DEADLINE_S: Final = 30.0


@dataclass
class View:
    """What the live view shows, updated from the output topics and the worker's metrics."""

    started: float = field(default_factory=time.monotonic)
    sent: Counter[str] = field(default_factory=Counter)
    insights: int = 0
    finals: int = 0
    activity: Counter[str] = field(default_factory=Counter)
    anomalies: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=6))
    observers: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    rate: float = 0.0
    _last: tuple[float, float] = (0.0, 0.0)

    def take(self, topic_kind: str, value: dict[str, Any]) -> None:
        if topic_kind == "rolling":
            self.insights += 1
            self.finals += int(value["final"])
            if value["scope"] == "subject" and value["final"]:
                self.activity[value["subject_id"]] += value["count"]
        elif topic_kind == "anomalies":
            self.anomalies.appendleft(value)
        elif topic_kind == "observers" and value.get("kind") == "observer":
            self.observers[value["observer_id"]] = value

    def scrape(self, port: int) -> None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                text = r.read().decode()
        except OSError:
            return
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, number = line.rpartition(" ")
                samples[name] = float(number)
        now, received = time.monotonic(), samples.get("insights_events_received_total", 0.0)
        last_time, last_received = self._last
        if last_time:
            self.rate = (received - last_received) / max(now - last_time, 1e-9)
        self._last = (now, received)
        self.metrics = samples

    def render(self, broker: str, worker_pid: int) -> Group:
        m = self.metrics
        head = Table.grid(padding=(0, 3))
        head.add_row(
            f"[b]insights {self.insights}[/b] (finals {self.finals})",
            f"events/s {self.rate:,.0f}",
            f"received {m.get('insights_events_received_total', 0):,.0f}",
            f"valid {m.get('insights_events_valid_total', 0):,.0f}",
            f"duplicates {m.get('insights_duplicates_total', 0):,.0f}",
            f"up {time.monotonic() - self.started:,.0f}s",
        )
        top = Table(title="top subjects (events in closed windows)", expand=True)
        top.add_column("subject")
        top.add_column("events", justify="right")
        for subject, count in self.activity.most_common(8):
            top.add_row(subject, f"{count:,}")
        anomalies = Table(title="latest anomalies", expand=True)
        for column in ("subject", "metric", "value", "z", "severity"):
            anomalies.add_column(column)
        for a in self.anomalies:
            colour = "red" if a["severity"] == "critical" else "yellow"
            anomalies.add_row(
                a["subject_id"], a["metric"], f"{a['value']:.2f}", f"{a['zscore']:+.1f}",
                f"[{colour}]{a['severity']}[/{colour}]",
            )  # fmt: skip
        flagged = Table(title="observers (drift)", expand=True)
        for column in ("observer", "drift", "outlier windows", "scored", "stale"):
            flagged.add_column(column)
        ranked = sorted(self.observers.values(), key=lambda o: -o["drift_score"])[:6]
        for o in ranked:
            mark = "[red]" if o["outlier_windows"] else ""
            flagged.add_row(
                f"{mark}{o['observer_id']}", f"{o['drift_score']:.2f}", str(o["outlier_windows"]),
                str(o["windows_scored"]), "yes" if o["stale"] else "",
            )  # fmt: skip
        dead = Table(title="dead letters by reason", expand=True)
        dead.add_column("reason")
        dead.add_column("count", justify="right")
        for name, value in sorted(m.items()):
            if name.startswith("insights_dead_letters_total{"):
                dead.add_row(name.split('"')[1], f"{value:,.0f}")
        footer = f"broker {broker} · worker pid {worker_pid} · Ctrl-C stops everything"
        return Group(
            Panel(head, title="observer-insights demo"),
            top,
            anomalies,
            flagged,
            dead,
            footer,
        )


async def _follow(bootstrap: str, topics: dict[str, str], view: View, stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=250, max_records=2000)
            for tp, records in batches.items():
                for record in records:
                    with contextlib.suppress(orjson.JSONDecodeError, TypeError, KeyError):
                        view.take(topics[tp.topic], orjson.loads(record.value))
    finally:
        await consumer.stop()


async def _generate(
    bootstrap: str, topic: str, rate: float, subjects: int, view: View, stop: asyncio.Event
) -> None:
    from aiokafka import AIOKafkaProducer

    config = GeneratorConfig(
        start_ms=int(time.time() * 1000),
        seed=int(time.time()),
        subjects=subjects,
        interval_ms=1000 / rate,
        invalid_share=0.01,
        duplicate_share=0.01,
        late_share=0.005,
        spike_share=0.003,
        drift_per_hour=60.0,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    started = time.monotonic()
    try:
        for i, event in enumerate(ObservationGenerator(config)):
            if stop.is_set():
                return
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await producer.send(topic, value=event.value, key=event.key)
            view.sent[str(event.kind)] += 1
    finally:
        await producer.stop()


def _worker(settings: Settings, bootstrap: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **DEMO_ENV, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    env.setdefault("INSIGHTS_WEB_PORT", str(settings.web_port))
    env.setdefault("INSIGHTS_METRICS_PORT", str(settings.metrics_port))
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C is ours to relay, once, as SIGTERM
        )


async def _run(settings: Settings, bootstrap: str, rate: float, subjects: int, log: Path) -> int:
    worker = _worker(settings, bootstrap, log)
    stop = stop_on_signals()
    view = View()
    topics = {
        settings.rolling_topic: "rolling",
        settings.anomaly_topic: "anomalies",
        settings.observer_topic: "observers",
    }
    tasks: list[asyncio.Task[None]] = []
    try:
        with Live(view.render(bootstrap, worker.pid), refresh_per_second=2, screen=False) as live:
            tasks = [
                asyncio.create_task(
                    _generate(bootstrap, settings.input_topic, rate, subjects, view, stop)
                ),
                asyncio.create_task(_follow(bootstrap, topics, view, stop)),
            ]
            while not stop.is_set():
                if worker.poll() is not None:
                    stop.set()
                    break
                view.scrape(settings.metrics_port)
                live.update(view.render(bootstrap, worker.pid))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(Exception):
                await task
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(worker.wait, _STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    code = worker.returncode
    click.echo(f"demo stopped: worker exited with {code}; its log is {log}")
    return 0 if code in (0, -signal.SIGTERM) else 1


@click.command()
@click.option("--rate", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="Observations per second from the load generator.")  # fmt: skip
@click.option("--subjects", type=click.IntRange(min=1), default=30, show_default=True)
def demo(rate: float, subjects: int) -> None:
    """Run the whole product on this machine: embedded broker (unless KAFKA_BOOTSTRAP_SERVERS
    is set), a worker, the load generator and a live view. Ctrl-C stops everything."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)
    if settings.web_port == 0 or settings.metrics_port == 0:
        settings = settings.model_copy(
            update={"web_port": free_port(), "metrics_port": free_port()}
        )
    log = Path(tempfile.mkdtemp(prefix="observer-insights-demo-")) / "worker.log"
    with contextlib.ExitStack() as stack:
        bootstrap = settings.bootstrap_servers
        if not bootstrap:
            try:
                broker = stack.enter_context(EmbeddedBroker(log_path=log.with_name("broker.log")))
            except EmbeddedBrokerError as exc:
                fail(f"embedded broker: {exc}", 3)
            bootstrap = broker.bootstrap_servers
        code = asyncio.run(_run(settings, bootstrap, rate, subjects, log))
    sys.exit(code)
