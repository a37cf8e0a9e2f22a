"""What the Kafka-facing subcommands share: settings, one-line failures, quiet logging."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import NoReturn

import click

from streams.runtime.errors import ConfigError
from streams.runtime.logs import configure_logging
from streams.runtime.settings import Settings, load_settings

__all__ = ["broker_settings", "fail", "load_or_fail", "stop_on_signals"]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line on stderr and exit."""
    click.echo(f"observer-insights: {message}", err=True)
    sys.exit(code)


def load_or_fail() -> Settings:
    """Settings from the environment; a bad one exits 2 with the line naming it."""
    try:
        return load_settings()
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)


def broker_settings(command: str) -> Settings:
    """Settings of a command that needs a broker: KAFKA_BOOTSTRAP_SERVERS must be set.

    Logging goes to stderr at `warning` (through the product's redacting pipeline), so
    stdout carries only the command's own output.
    """
    settings = load_or_fail()
    if settings.embedded:
        fail(
            f"{command}: KAFKA_BOOTSTRAP_SERVERS is unset; point it at a broker "
            "(only `worker` and `demo` start the embedded one)",
            2,
        )
    configure_logging("warning", settings.log_format)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)
    return settings


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, so a command stops cleanly and still reports."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
