"""Builders for action tests: handlers built from fake ports, a CallContext that records
what they publish, and the library's JSON schemas to check every answer and every payload."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from services.common.events import Body
from services.common.ocpp_version import OcppVersion
from services.common.store.port import Station
from services.gateway.actions import ActionPorts, Actions
from services.gateway.actions.common import BootDecider, CsrSigning, RunningCost
from services.gateway.contract_certs import ContractCertificateProvider
from services.gateway.ocsp import CertificateStatus
from services.gateway.context import CallContext, ConnectionState

UTC = timezone.utc
NOW = datetime(2026, 11, 28, 4, 21, 16, 4567, tzinfo=UTC)
OCPP_TIME = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"


class FakeStore:
    """Dict-backed stand-ins for the two store calls handlers make (the real adapters
    are covered by the store contract tests)."""

    def __init__(self, stations: dict[str, Station] | None = None) -> None:
        self.stations = stations or {}
        self.tx_ids: dict[str, int] = {}
        self.fail: Exception | None = None

    async def get_station(self, station_id: str) -> Station | None:
        if self.fail:
            raise self.fail
        return self.stations.get(station_id)

    async def allocate_transaction_id(self, business_key: str) -> int:
        if self.fail:
            raise self.fail
        return self.tx_ids.setdefault(business_key, len(self.tx_ids) + 1)


@dataclass
class FakeGate:
    """Boot admission: `admit` answers every boot; `pending` is the overload interval."""

    admit: bool = True
    pending: int | None = None
    asked: int = 0

    def admit_boot(self) -> bool:
        self.asked += 1
        return self.admit

    def pending_interval(self) -> int | None:
        return self.pending


@dataclass
class FakeTokens:
    """Token statuses by id (unknown: Invalid); `error` is raised instead when set."""

    known: dict[str, str]
    error: Exception | None = None

    async def __call__(self, id_token: str) -> str:
        if self.error is not None:
            raise self.error
        return self.known.get(id_token, "Invalid")


@dataclass
class Recorder:
    published: list[tuple[Body, datetime | None]] = field(default_factory=list)

    async def __call__(self, body: Body, station_time: datetime | None) -> None:
        self.published.append((body, station_time))

    @property
    def body(self) -> Any:
        assert len(self.published) == 1, f"expected exactly one event, got {self.published}"
        return self.published[0][0]

    @property
    def station_time(self) -> datetime | None:
        assert len(self.published) == 1
        return self.published[0][1]


@dataclass
class Harness:
    ctx: CallContext
    events: Recorder
    store: FakeStore
    tokens: FakeTokens
    gate: FakeGate
    actions: Actions

    def handler(self, action: str) -> Any:
        handler = self.actions.handler_for(self.ctx.ocpp_version, action)
        assert handler is not None, f"no handler for {action} in {self.ctx.ocpp_version}"
        return handler

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Run the handler the way the core does: validate in, run, validate out."""
        request_validator(self.ctx.ocpp_version, action).validate(payload)
        handler = self.handler(action)
        self.ctx.action = action
        response: dict[str, Any] = await handler(self.ctx, payload)
        response_validator(self.ctx.ocpp_version, action).validate(response)
        return response


def a_harness(
    version: str = "1.6",
    *,
    admit: bool = True,
    pending: int | None = None,
    tokens: dict[str, str] | None = None,
    stations: dict[str, Station] | None = None,
    store: FakeStore | None = None,
    heartbeat_interval: int = 300,
    running_cost: RunningCost | None = None,
    signing: CsrSigning | None = None,
    certificate_status: CertificateStatus | None = None,
    contract_certs: ContractCertificateProvider | None = None,
) -> Harness:
    events = Recorder()
    store = store or FakeStore(stations)
    known = FakeTokens({"TAG-OK": "Accepted", "TAG-BLOCKED": "Blocked"} if tokens is None else tokens)
    gate = FakeGate(admit, pending)
    ports = ActionPorts(
        clock=lambda: NOW,
        boot=BootDecider(store, gate, heartbeat_interval),
        tokens=known,
        tx_ids=store,
        running_cost=running_cost,
        signing=signing,
        certificate_status=certificate_status,
        contract_certs=contract_certs,
    )
    ctx = CallContext(
        station_id="CS-1",
        ocpp_version=OcppVersion(version),
        message_id="m-1",
        action="",
        received_at=NOW,
        state=ConnectionState(),
        publish=events,
    )
    return Harness(ctx=ctx, events=events, store=store, tokens=known, gate=gate, actions=Actions(ports))


def ts(minutes: int = 0) -> str:
    """A station timestamp `minutes` after NOW, as stations send it."""
    return (NOW + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def at(minutes: int = 0) -> datetime:
    return (NOW + timedelta(minutes=minutes)).replace(microsecond=0)


# --- schemas (tests/unit/gateway_actions/schemas.py) ----------------------------------------

from .schemas import request_validator, response_validator, wire  # noqa: E402,F401
