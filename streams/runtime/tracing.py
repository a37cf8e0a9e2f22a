"""OpenTelemetry tracing: W3C `traceparent` continued from input headers to every record an
event causes. Off unless an exporter is configured with OpenTelemetry's own variables; when
off, the agents skip all of it (one boolean test per batch)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from streams.runtime.errors import ConfigError

__all__ = ["Headers", "Tracing", "current_headers"]

Headers = list[tuple[str, bytes]]
_PROPAGATOR: Final = TraceContextTextMapPropagator()
_TRACE_HEADERS: Final = frozenset({"traceparent", "tracestate"})


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
        except ImportError as exc:
            msg = (
                "OTEL_TRACES_EXPORTER=otlp needs the otlp extra: "
                "pip install 'observer-coordinator-insights[otlp]'"
            )
            raise ConfigError(msg) from exc
        exporter: SpanExporter = OTLPSpanExporter()  # endpoint etc. from OTEL_EXPORTER_OTLP_*
        return exporter
    msg = f"OTEL_TRACES_EXPORTER={name!r}: supported are otlp, console, none"
    raise ConfigError(msg)


class Tracing:
    """The tracer of one worker, or a disabled stand-in."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.enabled = provider is not None
        self.provider = provider
        self._tracer = provider.get_tracer("observer-insights") if provider else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Tracing:
        """On when OTEL_TRACES_EXPORTER names an exporter, or an OTLP endpoint is set."""
        if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
            return cls()
        name = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        if not name and endpoint:
            name = "otlp"
        if not name or name == "none":
            return cls()
        provider = TracerProvider(
            resource=Resource.create(
                {"service.name": environ.get("OTEL_SERVICE_NAME", "observer-insights")}
            )
        )
        for exporter_name in name.split(","):
            provider.add_span_processor(BatchSpanProcessor(_exporter(exporter_name.strip())))
        return cls(provider)

    def shutdown(self) -> None:
        """Flush and stop exporting."""
        if self.provider is not None:
            self.provider.shutdown()

    @staticmethod
    def extract(headers: Any) -> Context | None:
        """The remote context from a message's `traceparent`/`tracestate` headers, if any."""
        if not headers:
            return None
        items = headers.items() if isinstance(headers, Mapping) else headers
        carrier = {
            key.lower(): value.decode("latin-1") if isinstance(value, bytes) else str(value)
            for key, value in items
            if key.lower() in _TRACE_HEADERS
        }
        if "traceparent" not in carrier:
            return None
        return _PROPAGATOR.extract(carrier)

    @staticmethod
    def inject(span_context: Context | None = None) -> Headers:
        """`traceparent` (and `tracestate`) headers for the current or given context."""
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=span_context)
        return [(key, value.encode("latin-1")) for key, value in carrier.items()]

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        *,
        parent: Context | None,
        kind: SpanKind,
        topic: str,
        partition: int | None = None,
        offset: int | None = None,
        operation: str = "process",
        attributes: Mapping[str, Any] | None = None,
    ) -> Iterator[Span]:
        """A span with the messaging semantic-convention attributes, made current."""
        assert self._tracer is not None, "span() is only called when tracing is enabled"
        attrs: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.type": operation,
            "messaging.destination.name": topic,
        }
        if partition is not None:
            attrs["messaging.destination.partition.id"] = str(partition)
        if offset is not None:
            attrs["messaging.kafka.offset"] = offset
        if attributes:
            attrs.update(attributes)
        token = otel_context.attach(parent) if parent is not None else None
        try:
            with self._tracer.start_as_current_span(name, kind=kind, attributes=attrs) as span:
                yield span
        finally:
            if token is not None:
                otel_context.detach(token)


def current_headers() -> Headers:
    """Headers carrying the current span's context (empty when there is none)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return []
    return Tracing.inject()
