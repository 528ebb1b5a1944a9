"""Builders for action tests: a fake CallContext that records what handlers publish,
and the library's JSON schemas to check every answer and every translated payload."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, cast

import jsonschema
import ocpp

from services.common.config import Settings
from services.common.events import Body
from services.common.store.port import Station, Store
from services.gateway.actions import handler_for
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
    tokens: dict[str, str]

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Run the handler the way the core does: validate in, run, validate out."""
        request_validator(self.ctx.ocpp_version, action).validate(payload)
        handler = handler_for(self.ctx.ocpp_version, action)
        assert handler is not None, f"no handler for {action} in {self.ctx.ocpp_version}"
        self.ctx.action = action
        response = await handler(self.ctx, payload)
        response_validator(self.ctx.ocpp_version, action).validate(response)
        return response


def a_harness(
    version: str = "1.6",
    *,
    admit: bool = True,
    tokens: dict[str, str] | None = None,
    stations: dict[str, Station] | None = None,
    store: FakeStore | None = None,
    **settings: Any,
) -> Harness:
    events = Recorder()
    store = store or FakeStore(stations)
    known = {"TAG-OK": "Accepted", "TAG-BLOCKED": "Blocked"} if tokens is None else tokens

    async def token_status(id_token: str) -> str:
        return known.get(id_token, "Invalid")

    ctx = CallContext(
        station_id="CS-1",
        ocpp_version=version,
        message_id="m-1",
        action="",
        received_at=NOW,
        settings=Settings(**settings),
        store=cast(Store, store),
        clock=lambda: NOW,
        gateway_id="gateway-0",
        state=ConnectionState(),
        publish=events,
        admit_boot=lambda: admit,
        token_status=token_status,
    )
    return Harness(ctx=ctx, events=events, store=store, tokens=known)


def ts(minutes: int = 0) -> str:
    """A station timestamp `minutes` after NOW, as stations send it."""
    return (NOW + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def at(minutes: int = 0) -> datetime:
    return (NOW + timedelta(minutes=minutes)).replace(microsecond=0)


# --- schemas --------------------------------------------------------------------------------

_cache: dict[tuple[str, str], Any] = {}


def _validator(version: str, name: str) -> Any:
    key = (version, name)
    if key not in _cache:
        folder = os.path.join(os.path.dirname(ocpp.__file__), "v" + version.replace(".", ""), "schemas")
        with open(os.path.join(folder, name + ".json"), encoding="utf-8-sig") as f:
            schema = json.loads(f.read(), parse_float=Decimal)
        cls = jsonschema.validators.validator_for(schema)  # Draft4 for 1.6, Draft6 for 2.x
        _cache[key] = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return _cache[key]


def request_validator(version: str, action: str) -> Any:
    return _validator(version, action if version == "1.6" else action + "Request")


def response_validator(version: str, action: str) -> Any:
    return _validator(version, action + "Response")


def wire(payload: dict[str, Any]) -> Any:
    """The payload as the station would parse it (floats as Decimal, for multipleOf)."""
    return json.loads(json.dumps(payload), parse_float=Decimal)
