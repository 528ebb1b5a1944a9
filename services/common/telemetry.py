"""Logging, Prometheus exposition, health endpoints and tracing shared by every service.

Metric names follow Prometheus conventions (`csms_<service>_<what>_<unit>`, `_total`
on counters). Station ids never become labels (cardinality); they go on spans and logs.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, disable_created_metrics, generate_latest
from opentelemetry import trace

from services.common.config import env_value

__all__ = ["RedactingFormatter", "redact", "setup_logging", "setup_tracing", "add_health_routes", "tracer"]

tracer = trace.get_tracer("csms")
# no *_created series: they double the exposition for nothing (prometheus_client leaves
# this one function unannotated)
disable_created_metrics()  # type: ignore[no-untyped-call]


def setup_tracing(role: str, env: dict[str, str] | None = None) -> None:
    """OpenTelemetry SDK: every OCPP call gets a span (attributes station.id, ocpp.action)
    whose context travels in the Kafka `traceparent` header to the processors.

    Sampling: parent-based, ratio CSMS_TRACE_SAMPLE_RATIO (default 0.01). Export: OTLP when
    OTEL_EXPORTER_OTLP_ENDPOINT is set and the exporter package is installed, spans on
    stderr with CSMS_TRACE_CONSOLE=1; with neither, tracing stays off (no-op, free).
    """
    import os

    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    e = os.environ if env is None else env
    console = bool(env_value("CSMS_TRACE_CONSOLE", e))  # declared settings (docs/configuration.md)
    if not (e.get("OTEL_EXPORTER_OTLP_ENDPOINT") or console):
        # No exporter: keep the API's no-op tracer. An SDK span costs ~20 us per OCPP call
        # even unsampled (bench/README.md), which buys nothing when nobody collects spans.
        return
    ratio = float(env_value("CSMS_TRACE_SAMPLE_RATIO", e))
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"csms-{role}"}),
        sampler=ParentBased(TraceIdRatioBased(ratio)),
    )
    if e.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[import-not-found]

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        except ImportError:
            logging.getLogger("csms.telemetry").warning(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry-exporter-otlp is not installed"
            )
    if console:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# Credentials that can reach a log line without our code logging them: aiohttp's "Error
# handling request" quotes the start of an over-long header (`b'Basic <b64>...'`) in the
# exception text, on the OCPP port and the API port alike; a repr of request headers
# shows `'Authorization': '...'`. Redacted: the value after an `Authorization` header name
# (to the end of the line, a quote or a backslash: bytes reprs print CRLF as `\r\n`),
# `Basic`/`Bearer`/`Digest` followed by something credential-like (at least one digit,
# capital, `+`, `/` or `=`, so "Basic auth" in prose stays), and `csms_<id>_<secret>` API
# keys anywhere.
_SECRET = re.compile(
    r"""(?P<header>(?i:authorization)['"]?\s*[:=]\s*['"]?)[^\r\n'"\\]+"""
    r"""|(?P<scheme>\b(?i:basic|bearer|digest)\s+)(?=[A-Za-z0-9._~+/=-]*[A-Z0-9+/=])[A-Za-z0-9._~+/=-]+"""
    r"""|(?P<key>\bcsms_)[0-9a-f]{16}_[A-Za-z0-9_-]+"""
)
# A line is searched only when it holds one of these (cheap `in` tests first).
_MARKERS = ("uthorization", "UTHORIZATION", "asic", "ASIC", "earer", "EARER", "igest", "IGEST", "csms_")
_REDACTED = "[redacted]"


def _hide(match: re.Match[str]) -> str:
    return (match.group("header") or match.group("scheme") or match.group("key")) + _REDACTED


def redact(text: str) -> str:
    """`text` with credentials replaced by `[redacted]` (unchanged when it holds no marker)."""
    if not any(marker in text for marker in _MARKERS):
        return text
    return _SECRET.sub(_hide, text)


class RedactingFormatter(logging.Formatter):
    """Formats with `inner` (or the standard format), then redacts credentials from the
    whole line: the message, the exception text and the stack."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__(_LOG_FORMAT)
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record) if self.inner is not None else super().format(record))


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr through a `RedactingFormatter`. Handlers someone installed on the root
    logger before us (plain stream/file handlers) get their formatter wrapped in one."""
    root = logging.getLogger()
    if not root.handlers:
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(RedactingFormatter())
        root.addHandler(stderr)
    else:
        for handler in root.handlers:
            if type(handler) in (logging.StreamHandler, logging.FileHandler) and not isinstance(handler.formatter, RedactingFormatter):
                handler.setFormatter(RedactingFormatter(handler.formatter))
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("cassandra").setLevel(logging.WARNING)


def add_health_routes(app: web.Application, ready: Callable[[], bool], *, metrics: bool = True) -> None:
    """GET /healthz (process alive), /readyz (dependencies usable) and, unless `metrics` is
    false, /metrics (the gateway's station port leaves it out: metrics are for the
    operator's scraper, not for whoever can reach the OCPP port)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ok = ready()
        return web.json_response({"status": "ready" if ok else "not ready"}, status=200 if ok else 503)

    async def metrics_(_: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if metrics:
        app.router.add_get("/metrics", metrics_)
