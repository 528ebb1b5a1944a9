"""`csms` console script: one entry point, one subcommand per process role."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from services.common.config import Settings, env_value, load_settings
from services.common.errors import ConfigError, CsmsError
from services.common.looplag import LoopLagMonitor
from services.common.runtime import Runtime, Service, bootstrap, bus_options, tune_gc
from services.common.telemetry import setup_logging, setup_tracing

__all__ = ["main"]

log = logging.getLogger("csms.cli")

# role -> "module:callable" of the services it runs, in start order (each callable takes the
# Runtime and returns a Service: a wiring function, services/<service>/wiring.py)
ROLES: dict[str, list[str]] = {
    "gateway": ["services.gateway.wiring:build_gateway"],
    "sessions": ["services.sessions.wiring:build_sessions"],
    "billing": ["services.billing.wiring:build_billing"],
    "smart-charging": ["services.smart_charging.wiring:build_smart_charging"],
    "stations": ["services.stations.wiring:build_stations"],
    "certificates": ["services.certificates.wiring:build_certificates"],
    "api": ["services.api.wiring:build_api"],
}
ROLES["run"] = (
    ROLES["sessions"] + ROLES["billing"] + ROLES["smart-charging"] + ROLES["stations"] + ROLES["certificates"] + ROLES["gateway"]
    + ROLES["api"]
)

# Roles that are stream processors only: health and metrics on CSMS_METRICS_PORT.
PROCESSOR_ROLES = ("sessions", "billing", "smart-charging", "stations", "certificates")

# The gateway role's pre-fork supervisor (CSMS_GATEWAY_WORKERS > 1), loaded by name like the
# roles: services/common imports no service (tests/architecture).
GATEWAY_SUPERVISOR = "services.gateway.workers:supervise"

EMBEDDED_CA = "services.certificates.cli:ensure_embedded_ca"   # (ca_dir: Path, settings) -> None; creates it if missing

# Operator tools with their own argument parsers, loaded by name when invoked:
# `csms ca ...` (the built-in certificate authority) and `csms api-key ...` (operator keys).
# Each is "module:main" taking the remaining arguments and returning an exit code.
TOOLS: dict[str, tuple[str, str]] = {
    "ca": ("services.certificates.cli:main", "the built-in certificate authority: init, issue-server-cert, show (ADR 017)"),
    "api-key": ("services.api.keys_cli:main", "operator API keys: create, list, revoke (ADR 017)"),
}
Supervisor = Callable[[Settings, Callable[[Settings, int], int]], int]


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bus-url", help="memory:// or kafka://host:9092[,host2:9092] (CSMS_BUS_URL)")
    p.add_argument("--store-url", help="sqlite:///./csms.db or cassandra://host:9042/keyspace (CSMS_STORE_URL)")
    p.add_argument("--host", help="listen address (CSMS_HOST)")
    p.add_argument("--ocpp-port", type=int, help="OCPP WebSocket port (CSMS_OCPP_PORT, 9000)")
    p.add_argument("--api-port", type=int, help="REST API port (CSMS_API_PORT, 8080)")
    p.add_argument("--gateway-id", help="gateway-N (CSMS_GATEWAY_ID)")
    p.add_argument("--api-key", help="bootstrap admin API key (CSMS_API_KEY)")
    p.add_argument("--open-registration", action="store_true", default=None, help="accept unknown stations (CSMS_OPEN_REGISTRATION)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING (CSMS_LOG_LEVEL)")


def _settings(args: argparse.Namespace) -> Settings:
    s = load_settings()
    return s.with_overrides(
        bus_url=args.bus_url,
        store_url=args.store_url,
        host=args.host,
        ocpp_port=args.ocpp_port,
        api_port=args.api_port,
        gateway_id=args.gateway_id,
        api_key=args.api_key,
        open_registration=args.open_registration,
        log_level=args.log_level,
    )


def _embedded_api_key(settings: Settings) -> Settings:
    if settings.api_key:
        return settings
    path = Path(str(env_value("CSMS_STATE_DIR"))) / "api_key"
    if path.exists():
        key = path.read_text().strip()
    else:
        key = "csms_" + secrets.token_urlsafe(24)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(key + "\n")
        path.chmod(0o600)
    return settings.with_overrides(api_key=key)


def _embedded_network(settings: Settings) -> Settings:
    """`csms run` listens on 127.0.0.1 unless CSMS_HOST (or --host) says otherwise, and gives
    stations created without a security profile profile 1 (Basic auth over plain ws) unless
    CSMS_DEFAULT_SECURITY_PROFILE says otherwise, and stops without a drain window unless
    CSMS_DRAIN_WINDOW_S says otherwise: it is the single-machine mode. The distributed
    roles listen on every interface (pods) and default to profile 2 (docs/security.md)."""
    if "CSMS_HOST" not in os.environ and settings.host == "0.0.0.0":
        settings = settings.with_overrides(host="127.0.0.1")
    if "CSMS_DEFAULT_SECURITY_PROFILE" not in os.environ:
        settings = settings.with_overrides(default_security_profile=1)
    if "CSMS_DRAIN_WINDOW_S" not in os.environ:
        # Ctrl-C closes the stations' sockets at once: the gradual drain is for rolling
        # updates of a gateway fleet (docs/deploying.md)
        settings = settings.with_overrides(drain_window_s=0.0)
    if "CSMS_CA_DIR" not in os.environ:
        # the built-in CA of the single-machine mode, created on first start (csms ca init)
        ca_dir = Path(str(env_value("CSMS_STATE_DIR"))) / "ca"
        ensure_ca: Callable[[Path, Settings], None] = _load(EMBEDDED_CA)
        ensure_ca(ca_dir, settings)
        settings = settings.with_overrides(ca_dir=str(ca_dir))
    return settings


def _masked(key: str | None) -> str:
    """The bootstrap key as shown at start-up: enough to tell keys apart, never the key."""
    if not key:
        return "(none)"
    return f"{key[:9]}… (full key in {Path(str(env_value('CSMS_STATE_DIR'))) / 'api_key'} or CSMS_API_KEY)"


def _embedded_files_dir(settings: Settings) -> Settings:
    """`csms run` keeps uploaded files in ./csms-files unless CSMS_FILES_DIR is set (set
    empty: in the store, as the distributed roles do)."""
    if "CSMS_FILES_DIR" in os.environ:
        return settings
    return settings.with_overrides(files_dir="./csms-files")


async def _serve(role: str, settings: Settings) -> None:
    if role != "run" and settings.bus_url.startswith("memory://"):
        raise ConfigError(
            f"`csms {role}` runs one service of the distributed system and needs a shared bus: "
            "set CSMS_BUS_URL=kafka://host:9092 (or use `csms run` for everything in one process)"
        )
    rt: Runtime = bootstrap(settings)
    await rt.start()
    if role == "run":
        # Embedded mode owns its SQLite file. Distributed roles never migrate on start:
        # concurrent schema changes from many pods are unsafe on Cassandra; run
        # `csms migrate` once (the Helm chart runs it as a pre-install/pre-upgrade hook Job).
        await rt.store.migrate()
    services: list[Service] = [_load(path)(rt) for path in ROLES[role]]
    started: list[Service] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    lag = LoopLagMonitor(settings.loop_lag_interval_s)  # csms_event_loop_lag_seconds, every role
    lag.start()
    runner = None
    try:
        if role != "gateway":
            # /readyz of the API and the processors: the last periodic store and bus probe
            await rt.readiness.start()
        for svc in services:
            await svc.start()
            started.append(svc)
        tune_gc()
        if role in PROCESSOR_ROLES and settings.metrics_port:
            # processors have no API of their own: serve health and metrics for probes and Prometheus
            # (the services' own checks read the adapters' flags, which the probe's reads refresh)
            runner = await _serve_health(settings, lambda: rt.readiness.ready() and all(s.ready() for s in started))
        elif role == "api" and settings.metrics_port:
            # the REST port keeps /healthz /readyz /metrics; Prometheus scrapes the port named `metrics`
            runner = await _serve_health(settings, lambda: all(s.ready() for s in started))
        if role == "run":
            host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
            print(
                "\nCSMS running (embedded mode: in-memory bus, "
                f"store {settings.store_url})\n"
                f"  OCPP endpoint : ws://{host}:{settings.ocpp_port}/ocpp/{{station_id}}\n"
                f"  REST API      : http://{host}:{settings.api_port}/api/v1  (OpenAPI: /api/v1/openapi.json)\n"
                f"  Admin API key : {_masked(settings.api_key)}\n"
                f"  Metrics       : http://{host}:{settings.api_port}/metrics\n"
                "  Try           : csms simulate --stations 3 (see README)\n",
                flush=True,
            )
        else:
            log.info("csms %s started (bus %s, store %s)", role, settings.bus_url, settings.store_url)
        await stop.wait()
    finally:
        if runner is not None:
            await runner.cleanup()
        for svc in reversed(started):
            try:
                await svc.stop()
            except Exception:  # keep stopping the others
                log.exception("stopping %s failed", getattr(svc, "name", svc))
        await rt.readiness.stop()
        lag.stop()
        await rt.close()


async def _serve_health(settings: Settings, ready: Any) -> Any:
    from aiohttp import web

    from services.common.telemetry import add_health_routes

    app = web.Application()
    add_health_routes(app, ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.metrics_port).start()
    return runner


async def _migrate(settings: Settings) -> None:
    rt = bootstrap(settings, pepper=b"")
    await rt.store.start()
    try:
        await rt.store.migrate()
    finally:
        await rt.store.close()
    print(f"store schema is up to date ({settings.store_url})")


def _add_dlq(sub: Any) -> None:
    dlq = sub.add_parser("dlq", help="list and replay dead letters (docs/dead-letters.md; needs a Kafka bus)")
    dsub = dlq.add_subparsers(dest="dlq_command", required=True)
    ls = dsub.add_parser("list", help="one line per dead letter: id, group, topic[partition]@offset, attempts, at, error")
    rp = dsub.add_parser("replay", help="re-publish dead letters to their topic, for their consumer group only")
    for p in (ls, rp):
        p.add_argument("--bus-url", help="kafka://host:9092[,host2:9092] (CSMS_BUS_URL)")
        p.add_argument("--topic", default=None, help="the consumed topic (default csms.events.v1) or its dead-letter topic")
        p.add_argument("--group", help="only dead letters of this consumer group")
    ls.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    ls.add_argument("--replayed", action="store_true", help="also list dead letters already replayed")
    rp.add_argument("id", nargs="?", help="the dead letter id (<partition>-<offset>, from `csms dlq list`)")
    rp.add_argument("--all", action="store_true", help="every dead letter not replayed yet (of --group)")


async def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from services.common import topics
    from services.common.bus import bus_from_url
    from services.common.bus import dead_letters

    if settings.bus_url.startswith("memory://"):
        raise ConfigError(
            "the in-memory bus lives inside `csms run`: use its API (GET /api/v1/dead-letters, "
            "POST /api/v1/dead-letters/{id}/replay), or set CSMS_BUS_URL=kafka://host:9092"
        )
    topic = args.topic or topics.EVENTS
    bus = bus_from_url(settings.bus_url, **bus_options(settings))
    await bus.start()
    try:
        if args.dlq_command == "list":
            found = await dead_letters.list_dead_letters(
                bus, topic, group=args.group, limit=max(1, args.limit), include_replayed=args.replayed
            )
            for dl in found:
                print(dl.line())
            print(f"{len(found)} dead letter(s) in {dead_letters.dead_letter_topic(topic)}", file=sys.stderr)
            return 0
        if args.all == bool(args.id):
            print("csms dlq replay: give either a dead letter id or --all", file=sys.stderr)
            return 2
        if args.all:
            done = await dead_letters.replay_all(bus, topic, group=args.group)
        else:
            one = await dead_letters.get_dead_letter(bus, topic, args.id)
            if one is None or (args.group is not None and one.group != args.group):
                print(f"csms dlq replay: no dead letter {args.id!r} in {dead_letters.dead_letter_topic(topic)}", file=sys.stderr)
                return 1
            done = [await dead_letters.replay(bus, one)]
        for r in done:
            print(f"replayed {r['id']}: {r['topic']}[{r['partition']}]@{r['offset']} for group {r['group']}")
        print(f"{len(done)} dead letter(s) replayed", file=sys.stderr)
        return 0
    finally:
        await bus.close()


def _install_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="csms", description="OCPP charging station management system")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in [
        ("run", "embedded mode: gateway, processors and API in one process (in-memory bus, SQLite)"),
        ("gateway", "OCPP WebSocket gateway (needs a Kafka bus)"),
        ("sessions", "sessions processor (needs a Kafka bus)"),
        ("billing", "billing processor (needs a Kafka bus)"),
        ("smart-charging", "smart charging processor (needs a Kafka bus)"),
        ("stations", "stations processor: station operations, history, device model, firmware campaigns (needs a Kafka bus)"),
        ("certificates", "certificates processor: signs station CSRs with the CA, renews, tracks issued certificates (needs a Kafka bus)"),
        ("api", "REST API for operators (needs a Kafka bus)"),
        ("migrate", "create or upgrade the store schema"),
    ]:
        _add_common(sub.add_parser(name, help=help_text))
    _add_dlq(sub)
    for tool, (_, tool_help) in TOOLS.items():
        tp = sub.add_parser(tool, help=tool_help, add_help=False)
        tp.add_argument("tool_args", nargs=argparse.REMAINDER)
    sim = sub.add_parser("simulate", help="charger simulator and load generator")
    sim_module = importlib.import_module("services.simulator.cli")
    sim_module.add_arguments(sim)

    raw = list(sys.argv[1:] if argv is None else argv)
    if raw and raw[0] in TOOLS:
        # a tool parses its own arguments: argparse's REMAINDER drops a leading option
        # (`csms ca --dir D init`, `csms api-key --help`)
        setup_logging(os.environ.get("CSMS_LOG_LEVEL", "WARNING"))
        run_tool: Callable[[list[str]], int] = _load(TOOLS[raw[0]][0])
        return int(run_tool(raw[1:]))
    args = parser.parse_args(argv)
    if args.command in TOOLS:
        setup_logging(os.environ.get("CSMS_LOG_LEVEL", "WARNING"))
        tool_main: Callable[[list[str]], int] = _load(TOOLS[args.command][0])
        return int(tool_main(list(args.tool_args)))
    if args.command == "simulate":
        setup_logging(os.environ.get("CSMS_LOG_LEVEL", "WARNING"))
        _install_uvloop()
        return int(asyncio.run(sim_module.run(args)) or 0)
    if args.command == "dlq":
        setup_logging(os.environ.get("CSMS_LOG_LEVEL", "WARNING"))
        dlq_settings = load_settings().with_overrides(bus_url=args.bus_url)
        try:
            return asyncio.run(_dlq(args, dlq_settings))
        except ConfigError as exc:
            print(f"csms: {exc}", file=sys.stderr)
            return 2
        except CsmsError as exc:
            print(f"csms dlq: {exc}", file=sys.stderr)
            return 1
    try:
        settings = _settings(args)  # every bad CSMS_* variable named, before anything starts
    except ConfigError as exc:
        print(f"csms: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    if args.command != "migrate":
        setup_tracing(args.command)
    _install_uvloop()
    try:
        if args.command == "migrate":
            asyncio.run(_migrate(settings))
        else:
            if args.command == "run":
                settings = _embedded_api_key(settings)
                settings = _embedded_files_dir(settings)
                settings = _embedded_network(settings)
            if args.command == "gateway" and settings.gateway_workers > 1:
                # CSMS_GATEWAY_WORKERS: SO_REUSEPORT worker processes, forked before any loop
                supervise: Supervisor = _load(GATEWAY_SUPERVISOR)
                return supervise(settings, lambda s, _k: asyncio.run(_serve("gateway", s)) or 0)
            asyncio.run(_serve(args.command, settings))
    except ConfigError as exc:
        print(f"csms: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
