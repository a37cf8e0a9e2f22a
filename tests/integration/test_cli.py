"""The command line on a real broker, run as subprocesses: produce, tail, topics, and a real
worker whose counters must equal what `produce` says it sent."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.cli.commands.tail import record_field
from streams.cli.generator import GeneratorConfig, ObservationGenerator
from tests.support.broker import Broker
from tests.support.worker import TopicNames, WorkerProcess, worker_env

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "streams"]
START = "2026-11-27T10:00:00Z"
START_MS = 1_795_773_600_000


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture
def cli_env(broker: Broker, names: TopicNames, tmp_path: Path) -> dict[str, str]:
    """The environment of a CLI run on this test's topics (4 partitions)."""
    return worker_env(broker.bootstrap_servers, names, tmp_path / "cli")


def test_produce_then_tail_shows_only_the_subject_asked_for(
    cli_env: dict[str, str], names: TopicNames, tmp_path: Path
) -> None:
    summary_path = tmp_path / "summary.json"
    produced = run_cli(
        cli_env,
        "produce",
        "--count", "500", "--rate", "0", "--seed", "3", "--start", START,
        "--subjects", "20", "--no-progress", "--summary-json", str(summary_path),
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    assert produced.stdout.startswith(f"produce: sent 500 messages to {names.input} in ")
    summary = json.loads(summary_path.read_text())
    assert summary["total"] == 500
    assert sum(summary["sent"].values()) == 500

    # The same seed and start generate the same messages here: what tail must show.
    generator = ObservationGenerator(
        GeneratorConfig(
            start_ms=START_MS,
            seed=3,
            subjects=20,
            invalid_share=0.01,
            duplicate_share=0.01,
            late_share=0.005,
            spike_share=0.005,
        ),
        count=500,
    )
    subject = "s-0007"
    expected = [
        e.value
        for e in generator
        if record_field(_json_or_none(e.value), e.key, "subject_id") == subject
    ]
    assert len(expected) > 10

    tailed = run_cli(
        cli_env, "tail", names.input, "--from-beginning", "--subject", subject, "--timeout", "5"
    )
    assert tailed.returncode == 0, tailed.stderr
    lines = tailed.stdout.splitlines()
    assert len(lines) == len(expected)
    partitions = set()
    for line, value in zip(lines, expected, strict=True):
        match = re.fullmatch(r"p(\d+)@(\d+) (\S+) (.*)", line)
        assert match, line
        partitions.add(match.group(1))
        assert match.group(3) == subject  # the key
        assert json.loads(match.group(4)) == json.loads(value)
    assert len(partitions) == 1  # one subject, one partition: in production order
    assert tailed.stderr.strip() == f"tail: {len(expected)} records shown (500 read)"

    limited = run_cli(cli_env, "tail", names.input, "--from-beginning", "--max", "3", "--pretty")
    assert limited.returncode == 0, limited.stderr
    assert limited.stdout.count('"event_id"') <= 3
    assert limited.stderr.strip() == "tail: 3 records shown (3 read)"


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def test_topics_create_then_describe_lists_the_partitions(
    cli_env: dict[str, str], names: TopicNames
) -> None:
    app_topics = [
        names.input,
        names.keyed,
        names.scores,
        names.rolling,
        names.anomalies,
        names.observers,
        names.deadletter,
        f"{names.app_id}-rolling-state-changelog",
        f"{names.app_id}-observer-state-changelog",
    ]
    created = run_cli(cli_env, "topics", "create")
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines() == [f"created  {t}" for t in app_topics]
    again = run_cli(cli_env, "topics", "create")
    assert again.stdout.splitlines() == [f"exists   {t}" for t in app_topics]

    described = run_cli(cli_env, "topics", "describe")
    assert described.returncode == 0, described.stderr
    out = described.stdout
    for topic in app_topics:
        assert f"{topic}  partitions=4  replication=1" in out.splitlines()
    partition_lines = [line for line in out.splitlines() if line.startswith("  partition ")]
    assert len(partition_lines) == 4 * len(app_topics)
    assert {line.split(":")[0] for line in partition_lines} == {
        f"  partition {p}" for p in range(4)
    }
    # The dead-letter topic's size limit is set at creation: every broker reports it.
    section = out.split(f"{names.deadletter}  partitions=4", 1)[1]
    assert "max.message.bytes=16777216" in section.splitlines()[1]

    missing = run_cli(cli_env, "topics", "describe", names.input, f"{names.input}-nope")
    assert missing.returncode == 1
    assert f"{names.input}-nope  missing" in missing.stdout.splitlines()


def test_broker_commands_need_a_broker(cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in cli_env.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    for args in (["produce", "--count", "5"], ["tail", "observations"], ["topics", "create"]):
        result = run_cli(env, *args)
        assert result.returncode == 2
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1
        assert "KAFKA_BOOTSTRAP_SERVERS is unset" in result.stderr


def _samples(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _counters(worker: WorkerProcess) -> dict[str, float]:
    s = _samples(worker.metrics())
    return {
        "events_received": s.get("insights_events_received_total", 0.0),
        "events_valid": s.get("insights_events_valid_total", 0.0),
        "dead_letters_invalid": s.get('insights_dead_letters_total{reason="invalid"}', 0.0),
        "duplicates": s.get("insights_duplicates_total", 0.0),
        "late_events": s.get("insights_late_events_total", 0.0),
    }


def test_worker_counts_exactly_what_produce_says_it_sent(
    cli_env: dict[str, str],
    names: TopicNames,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    worker = start_worker()
    worker.wait_ready()
    summary_path = tmp_path / "summary.json"
    produced = run_cli(
        cli_env,
        "produce",
        "--count", "600", "--rate", "0", "--seed", "5", "--subjects", "30",
        "--invalid-share", "0.1", "--duplicate-share", "0.05", "--late-share", "0",
        "--spike-share", "0.02", "--no-progress", "--summary-json", str(summary_path),
    )  # fmt: skip
    # No late share: sent at once, an event hours old is late only once every input
    # partition's watermark has passed its windows, which a burst does not promise
    # (late events: tests/integration/test_event_time.py and test_rolling.py).
    assert produced.returncode == 0, produced.stderr
    summary = json.loads(summary_path.read_text())
    assert sum(summary["sent"].values()) == 600
    assert summary["sent"]["late"] == 0
    assert summary["sent"]["invalid"] == 60
    expected = {k: float(v) for k, v in summary["expected_worker_counts"].items()}
    # Every subject is in a group: each duplicate counts in two scopes.
    assert expected["duplicates"] == 2 * summary["sent"]["duplicate"] > 0
    assert expected["late_events"] == 0

    deadline = time.monotonic() + 90
    counters = _counters(worker)
    while counters != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        counters = _counters(worker)
    assert counters == expected, worker.log_tail()
    time.sleep(3)  # and nothing more arrives later
    assert _counters(worker) == expected

    # The worker's table changelog is listed too, compacted.
    described = run_cli(cli_env, "topics", "describe")
    assert described.returncode == 0, described.stderr
    changelog = f"{names.app_id}-rolling-state-changelog"
    section = described.stdout.split(f"{changelog}  partitions=4  replication=1\n", 1)[1]
    assert "cleanup.policy=compact" in section.splitlines()[0]
    assert worker.stop() == 0
