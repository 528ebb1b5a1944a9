"""Spans, trace context on events, metrics, and what an idle socket keeps."""

from __future__ import annotations

import asyncio

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY, generate_latest

from tests.integration_inproc.gateway.harness import Gateway, call


def install_exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if type(provider) is trace.ProxyTracerProvider:
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    return exporter


async def test_each_call_gets_a_span_and_its_event_carries_the_trace_context(gw: Gateway) -> None:
    exporter = install_exporter()
    ws = await gw.connect("CP1")
    await call(ws, "Heartbeat", {}, mid="h1")
    spans = [s for s in exporter.get_finished_spans() if s.name == "ocpp.Heartbeat"]
    assert spans and spans[-1].attributes["station.id"] == "CP1" and spans[-1].attributes["ocpp.action"] == "Heartbeat"
    ev = await gw.wait_event(lambda e: e.type_name == "Heartbeat" and e.message_id == "h1")
    trace_id = f"{spans[-1].context.trace_id:032x}"
    assert ev.headers["traceparent"].startswith(f"00-{trace_id}-")


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_messages_callerrors_and_handling_time_are_counted_without_station_labels(gw: Gateway) -> None:
    before_in = sample("csms_gateway_ocpp_messages_total", {"action": "Heartbeat", "direction": "in"})
    before_ce = sample("csms_gateway_callerrors_total", {"code": "NotImplemented"})
    before_unknown = sample("csms_gateway_ocpp_messages_total", {"action": "unknown", "direction": "in"})
    ws = await gw.connect("CP1")
    await call(ws, "Heartbeat", {})
    await call(ws, "NoSuchAction", {})
    assert sample("csms_gateway_ocpp_messages_total", {"action": "Heartbeat", "direction": "in"}) == before_in + 1
    assert sample("csms_gateway_ocpp_messages_total", {"action": "unknown", "direction": "in"}) == before_unknown + 1
    assert sample("csms_gateway_callerrors_total", {"code": "NotImplemented"}) == before_ce + 1
    assert sample("csms_gateway_message_handling_seconds_count", {"action": "Heartbeat"}) >= 1
    assert sample("csms_gateway_connections", {"ocpp_version": "1.6"}) >= 1
    assert "CP1" not in generate_latest(REGISTRY).decode()


async def test_clock_skew_is_observed_for_messages_with_a_station_timestamp(gw: Gateway) -> None:
    before = sample("csms_gateway_clock_skew_seconds_count")
    ws = await gw.connect("CP1")
    await call(ws, "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": "2020-01-01T00:00:00Z"})
    assert sample("csms_gateway_clock_skew_seconds_count") == before + 1


async def test_deflate_is_negotiated_but_answers_go_out_uncompressed_so_no_zlib_context_is_kept(gw: Gateway) -> None:
    ws = await gw.connect("CP1", compress=15)
    assert ws.compress == 15
    assert (await call(ws, "Heartbeat", {}))[0] == 3
    conn = gw.svc.registry.get("CP1")
    assert conn.ws._writer is not None and conn.ws._writer._compressobj is None


async def test_an_idle_socket_is_waited_on_by_two_gateway_frames_and_keeps_no_queue_or_worker(gw: Gateway) -> None:
    """Memory per idle connection (bench/idle_memory.py): while a socket is idle, the handler
    task awaits GatewayApp.handle -> Connection.run -> aiohttp's receive(), with no frame in
    between (the handshake and set-up coroutines have finished, `async for` would add
    `__anext__`), and the connection holds no CALL queue and no worker task."""
    ws = await gw.connect("CP1")
    assert (await call(ws, "Heartbeat", {}))[0] == 3
    assert (await call(ws, "Heartbeat", {}))[0] == 3  # a second CALL after the first drained
    conn = gw.svc.registry.get("CP1")
    for _ in range(100):
        if conn.worker is None:
            break
        await asyncio.sleep(0.01)
    assert conn.worker is None and conn.queue is None
    [task] = [t for t in gw.svc.web.handlers if not t.done()]
    chain = []
    coro = task.get_coro()
    while coro is not None and hasattr(coro, "cr_code"):
        chain.append(coro.cr_code.co_qualname)
        coro = coro.cr_await
    ours = chain[chain.index("GatewayApp.handle"):]
    assert ours[:3] == ["GatewayApp.handle", "Connection.run", "WebSocketResponse.receive"], chain
