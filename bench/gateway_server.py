"""Benchmark launcher: ONLY the gateway (GatewayService) on the memory bus (or Kafka with
--bus-url, as bench/gateway_kafka.py runs it) + SQLite, set up
the way `csms gateway` sets itself up (load_settings() from CSMS_* env, setup_logging,
setup_tracing("gateway"), uvloop); a loopback benchmark sets the per-address limits
through their CSMS_* variables like any deployment (docs/configuration.md). Or `--mode echo`: a bare aiohttp
WebSocket server answering every text frame with one fixed CALLRESULT (the transport floor).

    .venv/bin/python bench/gateway_server.py --store-url sqlite:////tmp/x/csms.db \
        --ready-file /tmp/x/ready   # with e.g. CSMS_MSG_RATE_PER_S=1e9 in the environment

Writes {"port", "pid"} to --ready-file once listening; SIGTERM stops it cleanly; SIGUSR1
runs gc.collect() + malloc_trim(0) (used by idle_memory.py to separate allocator slack
from live memory). Memory-bus retention is kept small by default: with no consumer in
this process, retained records would otherwise grow the heap by ~1 KiB per event, which
a Kafka producer never keeps. Not part of the product.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _util import install_uvloop, raise_nofile  # noqa: E402

FIXED_RESULT = '[3,"0",{"currentTime":"2026-01-01T00:00:00.000Z","interval":300,"status":"Accepted"}]'


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


_snapshots: list[object] = []
_gc_time = [0.0, 0.0, 0.0]
_gc_start = [0.0]


def _gc_cb(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_start[0] = time.perf_counter()
    else:
        _gc_time[info["generation"]] += time.perf_counter() - _gc_start[0]


def _gc_dump(path: str) -> None:
    """SIGUSR2 (without --tracemalloc): cyclic-GC seconds and collections per generation so far."""
    stats = gc.get_stats()
    tmp = path + ".tmp"
    Path(tmp).write_text(json.dumps({
        "seconds": [round(t, 4) for t in _gc_time], "collections": [st["collections"] for st in stats],
        "collected": [st["collected"] for st in stats], "tracked_objects": len(gc.get_objects()),
    }))
    os.replace(tmp, path)


def _tracemalloc_dump(path: str) -> None:
    """SIGUSR2 with --tracemalloc: first call takes a baseline snapshot; each later call
    writes the top allocation growth since the baseline, by file and by line, to `path`."""
    import tracemalloc

    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    if not _snapshots:
        _snapshots.append(snap)
        return
    base = _snapshots[0]
    with open(path, "w") as f:
        for key in ("filename", "lineno"):
            stats = snap.compare_to(base, key)  # type: ignore[arg-type]
            f.write(f"== by {key}: total growth {sum(s.size_diff for s in stats) / 1024:.0f} KiB\n")
            for st in stats[:40]:
                f.write(f"{st.size_diff / 1024:10.1f} KiB {st.count_diff:8d} blocks  {st.traceback}\n")


async def _ready(path: str, port: int) -> None:
    tmp = path + ".tmp"
    Path(tmp).write_text(json.dumps({"port": port, "pid": os.getpid()}))
    os.replace(tmp, path)


async def run_gateway(args: argparse.Namespace, gateway_id: str | None = None, worker: int | None = None) -> None:
    from services.common.bus.memory import MemoryBus
    from services.common.config import load_settings
    from services.common.runtime import bootstrap
    from services.gateway.wiring import build_gateway  # noqa: I001

    settings = load_settings().with_overrides(store_url=args.store_url, host=args.host, ocpp_port=args.port, bus_url=args.bus_url,
                                              gateway_id=gateway_id)
    if args.producer_kw:  # diagnostics: try aiokafka producer settings the bus does not expose yet
        import aiokafka

        original = aiokafka.AIOKafkaProducer.__init__
        extra_kw = json.loads(args.producer_kw)

        def patched(self: object, *a: object, **kw: object) -> None:
            original(self, *a, **{**kw, **extra_kw})  # type: ignore[arg-type]

        aiokafka.AIOKafkaProducer.__init__ = patched  # type: ignore[method-assign]
    if settings.bus_url.startswith("memory://"):
        rt = bootstrap(settings, bus=MemoryBus(retention_bytes=args.bus_retention << 10))
    else:  # kafka://: the bus `csms gateway` builds from the same settings (bus_options)
        rt = bootstrap(settings)
    await rt.start()
    svc = build_gateway(rt)
    await svc.start()
    from services.common.runtime import tune_gc

    tune_gc()  # as `csms gateway` does after start-up
    if args.gc == "freeze":
        gc.collect()
        gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _trim)
    if args.tracemalloc:
        loop.add_signal_handler(signal.SIGUSR2, _tracemalloc_dump, args.tracemalloc)
    else:
        loop.add_signal_handler(signal.SIGUSR2, _gc_dump, str(Path(args.ready_file).with_suffix(".gc.json")))
    if worker is None:
        await _ready(args.ready_file, svc.port)
    else:  # CSMS_GATEWAY_WORKERS: worker 0 reports the supervisor once every worker listens
        Path(f"{args.ready_file}.w{worker}").write_text(str(os.getpid()))
        if worker == 0:
            n = settings.gateway_workers
            while not all(Path(f"{args.ready_file}.w{k}").exists() for k in range(n)):
                await asyncio.sleep(0.05)
            tmp = args.ready_file + ".tmp"
            Path(tmp).write_text(json.dumps({"port": svc.port, "pid": os.getppid()}))
            os.replace(tmp, args.ready_file)
    try:
        await stop.wait()
    finally:
        await svc.stop()
        await rt.close()


async def run_echo(args: argparse.Namespace) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=("ocpp1.6", "ocpp2.0.1"), heartbeat=None)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == web.WSMsgType.TEXT:
                await ws.send_str(FIXED_RESULT)
        return ws

    app = web.Application()
    app.router.add_get("/ocpp/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=4096)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _trim)
    await _ready(args.ready_file, port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["gateway", "echo"], default="gateway")
    p.add_argument("--store-url", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ready-file", required=True)
    p.add_argument("--bus-url", default="memory://", help="memory:// (default) or kafka://host:9092 (bench/gateway_kafka.py)")
    p.add_argument("--producer-kw", help="diagnostics: JSON keywords added to every AIOKafkaProducer (e.g. max_batch_size)")
    p.add_argument("--bus-retention", type=int, default=64, help="memory-bus KiB kept per partition")
    p.add_argument("--log-level", default=os.environ.get("CSMS_LOG_LEVEL", "INFO"))
    p.add_argument("--no-tracing", action="store_true", help="skip setup_tracing (no SDK TracerProvider)")
    p.add_argument("--tracemalloc", help="diagnostics only: trace allocations; SIGUSR2 = baseline, then dump growth to this file")
    p.add_argument("--gc", choices=["default", "off", "freeze"], default="default",
                   help="diagnostics: 'off' disables the cyclic GC; 'freeze' = gc.freeze() after start-up and gen0 threshold 50,000")
    args = p.parse_args()
    gc.callbacks.append(_gc_cb)
    if args.gc == "off":
        gc.disable()
    elif args.gc == "freeze":
        gc.set_threshold(50_000, 20, 20)
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(1)
    raise_nofile()
    from services.common.telemetry import setup_logging, setup_tracing

    setup_logging(args.log_level)
    logging.getLogger("csms.gateway").info("bench launcher: mode=%s", args.mode)
    if args.mode == "gateway" and not args.no_tracing:
        setup_tracing("gateway")
    install_uvloop()
    if args.mode == "gateway" and int(os.environ.get("CSMS_GATEWAY_WORKERS", "1") or 1) > 1:
        # SO_REUSEPORT workers as `csms gateway` runs them; they must share one explicit port
        from services.common.config import load_settings
        from services.gateway.workers import supervise

        if not args.port:
            import socket

            with socket.socket() as s:
                s.bind((args.host, 0))
                args.port = s.getsockname()[1]
        sys.exit(supervise(load_settings(), lambda st, k: asyncio.run(run_gateway(args, st.gateway_id, k)) or 0))
    asyncio.run(run_gateway(args) if args.mode == "gateway" else run_echo(args))


if __name__ == "__main__":
    main()
