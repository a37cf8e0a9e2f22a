"""Running a worker: logging, the embedded broker when needed, topics, metrics, Faust."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from typing import Final

import faust
import structlog
from aiokafka.errors import KafkaConnectionError

from streams.app import create_app
from streams.cli.embedded import EmbeddedBroker
from streams.faust.commit_gate import commit_gate
from streams.faust.versions import check_versions
from streams.runtime.errors import ConfigError
from streams.runtime.gc_tuning import tune_collector
from streams.runtime.heap import limit_arenas
from streams.runtime.kafka import check_access, ensure_topics, topic_max_bytes
from streams.runtime.logs import configure_logging, register_secrets
from streams.runtime.metrics import serve_metrics
from streams.runtime.settings import Settings
from streams.runtime.tracing import Tracing

__all__ = ["run_worker"]

logger = structlog.get_logger(__name__)

_BROKER_WAIT_S: Final = 60.0


async def _ensure_topics_when_reachable(settings: Settings) -> int | None:
    """Create the topics, waiting (bounded) for a broker that is still starting; returns the
    dead-letter topic's `max.message.bytes` (None: unknown).

    A broker that refuses our credentials or certificate is not retried: ConfigError at once.
    """
    deadline = time.monotonic() + _BROKER_WAIT_S
    while True:
        try:
            await ensure_topics(settings)
            return await topic_max_bytes(settings, settings.deadletter_topic)
        except KafkaConnectionError as exc:
            await check_access(settings)  # raises ConfigError when retrying cannot help
            if time.monotonic() > deadline:
                msg = f"KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers}: unreachable: {exc}"
                raise ConfigError(msg) from exc
            logger.warning("broker_unreachable_retrying", error=str(exc))
            await asyncio.sleep(1.0)


class InsightsWorker(faust.Worker):
    """Faust's worker with a bounded graceful stop: the first SIGTERM/SIGINT stops fetching,
    finishes the batch in hand, flushes, commits and exits 0; if that takes longer than
    INSIGHTS_SHUTDOWN_TIMEOUT the process exits 1; a second signal exits at once."""

    shutdown_timeout_s: float = 20.0

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if self._signal_stop_time:
            logger.warning("second_signal_exit_now", signal=signal.name)
            os._exit(128 + signal.value)
        logger.info("shutdown_started", signal=signal.name, bound_s=self.shutdown_timeout_s)
        watchdog = threading.Timer(self.shutdown_timeout_s, self._shutdown_overdue)
        watchdog.daemon = True
        watchdog.start()
        super()._schedule_shutdown(signal)

    def _on_sigusr2(self) -> None:
        """mode opens pdb on SIGUSR2, which would stall a worker that has no terminal; dump
        every task's stack to stderr instead, as SIGUSR1 does (for a stuck worker)."""
        self._on_sigusr1()

    def watch_failure(self, app: faust.App) -> None:
        """A failed unit of work (`commit_gate(app).fail`) fails the process: stop as on
        SIGTERM (nothing more is committed), exit non-zero within the shutdown bound, so the
        orchestrator restarts it; never alive but idle. Polled from a daemon thread: the
        failure may have left the event loop's own services crashed."""
        gate = commit_gate(app)
        loop = self.loop

        def watch() -> None:
            while gate.failed is None:
                time.sleep(0.1)
            self.failed = True
            logger.error("worker_failed_exiting", error=repr(gate.failed))
            loop.call_soon_threadsafe(self._schedule_shutdown, signal.SIGTERM)

        threading.Thread(target=watch, name="failure-watch", daemon=True).start()

    failed: bool = False

    def _shutdown_overdue(self) -> None:
        logger.error("shutdown_overdue_exit", bound_s=self.shutdown_timeout_s)
        logging.shutdown()
        os._exit(1)


def _secrets(settings: Settings) -> list[str | None]:
    return [
        s.get_secret_value() if s else None
        for s in (settings.sasl_password, settings.sasl_username, settings.ssl_key_password)
    ]


def run_worker(settings: Settings) -> int:
    """Run one worker until it is stopped; returns the process exit code. Raises
    DependencyError first when a library is not the version `streams.faust` supports."""
    check_versions()
    limit_arenas()  # before the Kafka client threads exist
    configure_logging(settings.log_level, settings.log_format)
    register_secrets(_secrets(settings))
    with contextlib.ExitStack() as stack:
        if settings.embedded:
            if settings.processing_guarantee == "exactly_once":
                msg = (
                    "INSIGHTS_PROCESSING_GUARANTEE=exactly_once needs Apache Kafka or Redpanda: "
                    "the embedded broker has no transactional producer; set "
                    "KAFKA_BOOTSTRAP_SERVERS"
                )
                raise ConfigError(msg)
            broker = stack.enter_context(EmbeddedBroker())
            settings = settings.model_copy(update={"bootstrap_servers": broker.bootstrap_servers})
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        deadletter_max_bytes = loop.run_until_complete(_ensure_topics_when_reachable(settings))
        tracing = Tracing.from_env(os.environ)
        stack.callback(tracing.shutdown)
        insights = create_app(settings, tracing=tracing, deadletter_max_bytes=deadletter_max_bytes)
        serve_metrics(insights.metrics, settings.web_host, settings.metrics_port)
        logger.info(
            "worker_starting",
            app_id=settings.app_id,
            bootstrap_servers=settings.bootstrap_servers,
            input_topic=settings.input_topic,
            processing_guarantee=settings.processing_guarantee,
            web_port=settings.web_port,
            metrics_port=settings.metrics_port,
            tracing=tracing.enabled,
        )
        worker = InsightsWorker(
            insights.app,
            loop=loop,
            loglevel=settings.log_level,
            override_logging=False,
            quiet=True,
            redirect_stdouts=False,
        )
        worker.spinner = None
        worker.shutdown_timeout_s = settings.shutdown_timeout_s
        worker.watch_failure(insights.app)
        tune_collector()  # the app is built: freeze it, then collect less often
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            code = code or (1 if worker.failed else 0)
            logger.info("worker_stopped", exit_code=code)
            return code
    return 1 if worker.failed else 0
