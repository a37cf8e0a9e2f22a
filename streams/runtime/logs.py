"""Logging: structlog events, JSON (or console) on stdout, one per line, secrets redacted.

The stdlib loggers of Faust, mode and aiokafka are routed through the same processors, so
every line has the same shape. Observation values and attributes never reach `info` and
above, and any registered secret string is masked wherever it appears.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, MutableMapping
from typing import Any, Final

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["RepeatFilter", "configure_logging", "register_secrets"]

_SENSITIVE_KEYS: Final = frozenset({"value", "attributes", "password", "sasl_password"})
_MASK: Final = "[REDACTED]"
_secrets: set[str] = set()


def register_secrets(values: Iterable[str | None]) -> None:
    """Remember secret strings (passwords, file contents) so no log line ever shows them."""
    _secrets.update(v for v in values if v and len(v) >= 4)


def _mask(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def redact(_: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Drop observation contents below debug and mask registered secrets everywhere."""
    if method_name != "debug":
        for key in _SENSITIVE_KEYS & event_dict.keys():
            event_dict[key] = _MASK
    if _secrets:
        for key, value in event_dict.items():
            if isinstance(value, str):
                event_dict[key] = _mask(value)
            elif value is not None and not isinstance(value, int | float | bool):
                event_dict[key] = _mask(str(value))
    return event_dict


def _rename_event(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # stdlib records arrive with their formatted message as `event`; keep the logger name.
    record = event_dict.get("_record")
    if record is not None:
        event_dict.setdefault("logger", record.name)
    return event_dict


class RepeatFilter(logging.Filter):
    """Let one record of a kind (logger, level, message template) through per `window_s`.

    aiokafka logs a reconnect error per attempt; during a broker outage that is hundreds of
    lines a second. The next record of a kind let through carries `suppressed=N`.
    """

    def __init__(self, window_s: float = 5.0) -> None:
        super().__init__()
        self.window_s = window_s
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        last, suppressed = self._seen.get(kind, (0.0, 0))
        if now - last < self.window_s:
            self._seen[kind] = (last, suppressed + 1)
            return False
        if suppressed:
            record.suppressed = suppressed
        self._seen[kind] = (now, 0)
        return True


def _add_suppressed(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    suppressed = getattr(record, "suppressed", None)
    if suppressed:
        event_dict["suppressed"] = suppressed
    return event_dict


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Install the product's logging for structlog and the stdlib (idempotent)."""
    numeric = logging.getLevelName(level.upper())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _rename_event, _add_suppressed],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Chatty third-party loggers: their INFO lines are about internals, not events, and
    # aiokafka repeats its connection errors on every retry.
    for name in ("aiokafka", "faust.transport", "mode.timers"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    repeats = RepeatFilter()
    handler.addFilter(
        lambda record: repeats.filter(record) if record.name.startswith("aiokafka") else True
    )


def bind(fields: MutableMapping[str, Any]) -> None:
    """Bind correlation fields (topic, partition, offset, trace id) to this context."""
    structlog.contextvars.bind_contextvars(**fields)
