"""Logging, Prometheus exposition, health endpoints and tracing shared by every service.

Metric names follow Prometheus conventions (`csms_<service>_<what>_<unit>`, `_total`
on counters). Station ids never become labels (cardinality); they go on spans and logs.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, disable_created_metrics, generate_latest
from opentelemetry import trace

__all__ = ["setup_logging", "setup_tracing", "add_health_routes", "tracer"]

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
    if not (e.get("OTEL_EXPORTER_OTLP_ENDPOINT") or e.get("CSMS_TRACE_CONSOLE") == "1"):
        # No exporter: keep the API's no-op tracer. An SDK span costs ~20 us per OCPP call
        # even unsampled (bench/README.md), which buys nothing when nobody collects spans.
        return
    ratio = float(e.get("CSMS_TRACE_SAMPLE_RATIO", "0.01"))
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
    if e.get("CSMS_TRACE_CONSOLE") == "1":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
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
