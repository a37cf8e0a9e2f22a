"""A real worker process (`observer-insights worker`) under test, with its own topics."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.cli.embedded import free_port

WORKER = [sys.executable, "-m", "streams", "worker"]


@dataclass(frozen=True)
class TopicNames:
    """Unique topic names and group id for one test, so tests never see each other's data."""

    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def app_id(self) -> str:
        return f"oci-test-{self.suffix}"

    @property
    def input(self) -> str:
        return f"observations-{self.suffix}"

    @property
    def deadletter(self) -> str:
        return f"observations.deadletter-{self.suffix}"

    @property
    def rolling(self) -> str:
        return f"insights.rolling-{self.suffix}"

    @property
    def anomalies(self) -> str:
        return f"insights.anomalies-{self.suffix}"

    @property
    def observers(self) -> str:
        return f"insights.observers-{self.suffix}"

    @property
    def keyed(self) -> str:
        return f"{self.app_id}-observations-by-subject"

    @property
    def scores(self) -> str:
        return f"{self.app_id}-observer-scores"

    def env(self) -> dict[str, str]:
        return {
            "INSIGHTS_APP_ID": self.app_id,
            "INSIGHTS_INPUT_TOPIC": self.input,
            "INSIGHTS_DEADLETTER_TOPIC": self.deadletter,
            "INSIGHTS_ROLLING_TOPIC": self.rolling,
            "INSIGHTS_ANOMALY_TOPIC": self.anomalies,
            "INSIGHTS_OBSERVER_TOPIC": self.observers,
        }


class WorkerProcess:
    """One worker subprocess; its JSON log lines are kept in a file for assertions."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.web_port = int(env["INSIGHTS_WEB_PORT"])
        self.metrics_port = int(env["INSIGHTS_METRICS_PORT"])
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            WORKER, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def http(self, path: str, port: int | None = None) -> tuple[int, bytes]:
        """GET a path on the web port (or another port); (status, body), 0 when refused."""
        url = f"http://127.0.0.1:{port or self.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def wait_ready(self, deadline_s: float = 90.0) -> float:
        """Poll /readyz until it answers 200; returns the seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < deadline_s:
            if self.process.poll() is not None:
                msg = f"worker exited with {self.process.returncode}:\n{self.log_tail()}"
                raise AssertionError(msg)
            status, _ = self.http("/readyz")
            if status == 200:
                return time.monotonic() - start
            time.sleep(0.2)
        msg = f"worker not ready within {deadline_s}s:\n{self.log_tail()}"
        raise AssertionError(msg)

    def metrics(self) -> str:
        """The Prometheus exposition text."""
        status, body = self.http("/metrics", port=self.metrics_port)
        assert status == 200, status
        return body.decode()

    def stop(self, sig: int = signal.SIGTERM, deadline_s: float = 30.0) -> int:
        """Signal the worker and wait for it to exit; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=deadline_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                msg = f"worker did not stop within {deadline_s}s:\n{self.log_tail()}"
                raise AssertionError(msg) from None
        self._log.close()
        return self.process.returncode

    def log_lines(self) -> list[dict[str, Any]]:
        """Every JSON log line so far (non-JSON lines are returned as {'raw': line})."""
        lines = []
        for raw in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                lines.append({"raw": raw})
        return lines

    def log_tail(self, n: int = 40) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-n:])


def worker_env(
    bootstrap: str, names: TopicNames, data_dir: Path, **overrides: str
) -> dict[str, str]:
    """The environment of a worker under test: real broker, unique topics, free ports."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("INSIGHTS_", "KAFKA_", "OTEL_"))
    }
    env.update(names.env())
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "INSIGHTS_TOPIC_PARTITIONS": "4",
            "INSIGHTS_WEB_HOST": "127.0.0.1",
            "INSIGHTS_WEB_PORT": str(free_port()),
            "INSIGHTS_METRICS_PORT": str(free_port()),
            "INSIGHTS_DATA_DIR": str(data_dir),
            "INSIGHTS_LOG_FORMAT": "json",
        }
    )
    env.update(overrides)
    return env


async def wait_metric_at_least(
    worker: WorkerProcess, name: str, value: float, deadline_s: float = 60.0
) -> None:
    """Poll the worker's `/metrics` until the sample `name` reaches `value`."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for line in worker.metrics().splitlines():
            if line.startswith(name + " ") and float(line.split()[1]) >= value:
                return
        await asyncio.sleep(0.05)
    msg = f"{name} did not reach {value} within {deadline_s}s"
    raise AssertionError(msg)
