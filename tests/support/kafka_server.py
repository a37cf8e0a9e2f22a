"""An Apache Kafka broker of a test's own, run by `.ci/kafka/kafka.sh` (KRaft, loopback).

For tests that need what the embedded broker lacks (transactions, a broker that can be
stopped and started with its storage on disk, SASL_SSL): each `KafkaServer` has its own run
dir and free ports, whatever broker the rest of the session uses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.support.broker import Broker

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / ".ci" / "kafka" / "kafka.sh"


class KafkaServer:
    """One broker in `run_dir`; `start`/`stop` may be repeated (storage is kept between)."""

    def __init__(
        self,
        run_dir: Path,
        *,
        extra_properties: str | None = None,
        format_args: str | None = None,
        ready_probe: bool = True,
        jvm_opts: str | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.bootstrap_servers = ""
        self._env = {
            key: value for key, value in os.environ.items() if not key.startswith("KAFKA_")
        }
        self._env.update(
            {
                "KAFKA_RUN_DIR": str(run_dir),
                "KAFKA_PORT": "0",
                "KAFKA_CONTROLLER_PORT": "0",
                "KAFKA_KEEP": "1",
                "KAFKA_READY_PROBE": "1" if ready_probe else "0",
            }
        )
        if extra_properties is not None:
            path = run_dir.parent / f"{run_dir.name}.extra.properties"
            path.write_text(extra_properties, encoding="utf-8")
            self._env["KAFKA_EXTRA_PROPERTIES"] = str(path)
        if format_args:
            self._env["KAFKA_FORMAT_ARGS"] = format_args
        if jvm_opts:
            self._env["KAFKA_JVM_OPTS"] = jvm_opts

    def _run(self, *args: str, timeout_s: float = 180.0) -> str:
        done = subprocess.run(
            [str(KAFKA_SH), *args, str(self.run_dir)],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            msg = f"kafka.sh {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}"
            raise AssertionError(msg)
        return done.stdout

    def start(self) -> float:
        """Start (or restart on the kept storage) and wait until ready; returns seconds.

        A first start whose freshly picked port was taken meanwhile (another broker on this
        machine) is retried with new ports; a restart keeps its ports.
        """
        began = time.monotonic()
        for attempt in range(3):
            fresh = not (self.run_dir / "data" / "meta.properties").exists()
            try:
                output = self._run("start")
                break
            except AssertionError as exc:
                if not fresh or "already in use" not in str(exc) or attempt == 2:
                    raise
                shutil.rmtree(self.run_dir, ignore_errors=True)
        last = output.strip().splitlines()[-1]
        name, _, value = last.partition("=")
        assert name == "KAFKA_BOOTSTRAP_SERVERS", last
        self.bootstrap_servers = value
        return time.monotonic() - began

    def stop(self) -> float:
        """Stop the broker (SIGTERM, controlled shutdown), keeping its storage."""
        began = time.monotonic()
        self._run("stop")
        return time.monotonic() - began

    def running(self) -> bool:
        return (
            subprocess.run(
                [str(KAFKA_SH), "status", str(self.run_dir)],
                env=self._env,
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )

    def destroy(self) -> None:
        """Stop if running and remove the run dir."""
        env = dict(self._env, KAFKA_KEEP="0")
        subprocess.run(
            [str(KAFKA_SH), "stop", str(self.run_dir)],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )

    def broker(self) -> Broker:
        """As the integration tests' `Broker` (transactions: yes)."""
        return Broker(self.bootstrap_servers, "external")
