"""Station commands: the API's one snake_case vocabulary, validation, and the result waiter.

The gateway translates a command to the station's OCPP version; the API only checks
what every version needs (type, required parameters, their types). The command types
are the gateway's builder table (`services.common.ocpp.commands.COMMAND_TYPES`): a
command the gateway cannot build is not accepted here. Results come back
on csms.events.v1 as CommandResult bodies; `CommandWaiter` is a consumer group of
its own per API instance (every instance sees every result), filters on the
CloudEvents `ce_type` header before decoding anything, and resolves the future of
the request that issued the command. A result nobody waits for any more (it came
after the timeout) is ignored here; the stations processor records it in the store.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from typing import Any, Sequence

from services.api.validation import MISSING, Validator
from services.common import topics
from services.common.bus import Bus, Record, Subscription
from services.common.codec import decode_event
from services.common.decimals import parse_decimal
from services.common.events import CommandResult
from services.common.ocpp.commands import (
    CERTIFICATE_TYPES,
    COMMAND_TYPES,
    HASH_ALGORITHMS,
    INSTALLED_CERTIFICATE_TYPES,
    SET_CHARGING_LIMIT,
    SIGNED_CERTIFICATE_TYPES,
    TRIGGER_MESSAGES,
)

__all__ = [
    "WaiterClosed",
    "COMMAND_TYPES",
    "MAX_TIMEOUT_S",
    "RESULT_CE_TYPE",
    "CommandWaiter",
    "validate_command",
]

log = logging.getLogger("csms.api.commands")

RESULT_CE_TYPE = "csms.events.v1.CommandResult"
MAX_TIMEOUT_S = 120.0


_ENVELOPE_KEYS = {"type", "timeout"}
_CSMS_ROOT_16 = "CentralSystemRootCertificate"  # 1.6's name of CSMSRootCertificate, accepted too


def _is_scalar(value: object) -> bool:
    return isinstance(value, (str, int, float, bool))


def _variables(v: Validator, *, with_value: bool) -> None:
    value = v.data.get("variables", MISSING)
    if value is MISSING:
        v.fail("variables", "is required")
        return
    if not isinstance(value, list) or not value:
        v.fail("variables", "must be a non-empty list of {component, variable" + (", value}" if with_value else "}"))
        return
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            v.fail(f"variables[{i}]", "must be an object")
            continue
        for key in ("component", "variable"):
            part = item.get(key)
            named = isinstance(part, dict) and isinstance(part.get("name"), str) and part["name"]
            if not (isinstance(part, str) and part) and not named:
                v.fail(f"variables[{i}].{key}", "is required (a name, or an object with \"name\")")
        if with_value and not _is_scalar(item.get("value")):
            v.fail(f"variables[{i}].value", "is required (a string; numbers and booleans are sent as text)")


def _params(v: Validator, command_type: str) -> None:
    # Parameters most commands share: typed when present.
    v.integer("connector_id", minimum=0, maximum=2**31 - 1)
    v.integer("evse_id", minimum=0, maximum=2**31 - 1)
    if command_type == "RemoteStart":
        v.string("id_token", required=True, max_len=36)
    elif command_type == "RemoteStop":
        tx = v.data.get("transaction_id", MISSING)
        if tx is MISSING:
            v.fail("transaction_id", "is required")
        elif isinstance(tx, bool) or not isinstance(tx, (int, str)) or tx == "":
            v.fail("transaction_id", "must be an integer (1.6) or a string (2.0.1)")
    elif command_type == "Reset":
        v.string("reset_type", required=True, choices=("Soft", "Hard"))
    elif command_type == "ChangeAvailability":
        v.string("availability", required=True, choices=("Operative", "Inoperative"))
    elif command_type == "TriggerMessage":
        v.string("requested_message", required=True, choices=TRIGGER_MESSAGES)
        v.boolean("extended")
    elif command_type == "UpdateFirmware":
        v.string("location", required=True, max_len=512)
        if ("signing_certificate" in v.data) != ("signature" in v.data):
            v.fail("signature", "a signed update needs both signing_certificate and signature")
    elif command_type == "SetNetworkProfile":
        v.integer("configuration_slot", required=True, minimum=0, maximum=2**31 - 1)
        if not isinstance(v.data.get("connection_data"), dict):
            v.fail("connection_data", "is required (a network connection profile object)")
    elif command_type == "ChangeConfiguration":
        v.string("key", required=True, max_len=50)
        value = v.data.get("value", MISSING)
        if value is MISSING or value is None:
            v.fail("value", "is required")
        elif not _is_scalar(value) or (isinstance(value, str) and len(value) > 500):
            v.fail("value", "must be a string of at most 500 characters (numbers and booleans are sent as text)")
    elif command_type == "SetChargingProfile":
        if not isinstance(v.data.get("charging_profile"), dict):
            v.fail("charging_profile", "is required (an OCPP charging profile object)")
    elif command_type == SET_CHARGING_LIMIT:
        purpose = v.string("purpose", required=True, choices=("tx", "default"))
        v.integer("profile_id", required=True, minimum=0, maximum=2**31 - 1)
        amps = parse_decimal(v.data.get("limit_a"))
        if amps is None or amps < 0:
            v.fail("limit_a", "is required (a current >= 0 A per phase, as a number or a decimal string)")
        v.integer("number_phases", nullable=True, minimum=1, maximum=3)
        if purpose == "tx":
            v.string("transaction_id", required=True, max_len=36)
            v.string("start", required=True, max_len=40)
    elif command_type == "GetConfiguration":
        keys = v.data.get("keys", MISSING)
        if keys is not MISSING and keys is not None and (
            not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys)
        ):
            v.fail("keys", "must be a list of configuration key names")
    elif command_type == "CertificateSigned":
        v.string("certificate_chain", required=True, max_len=10000)
        v.string("certificate_type", choices=SIGNED_CERTIFICATE_TYPES)
    elif command_type == "InstallCertificate":
        v.string("certificate_type", required=True, choices=(*CERTIFICATE_TYPES, _CSMS_ROOT_16))
        v.string("certificate", required=True, max_len=5500)
    elif command_type == "DeleteCertificate":
        v.string("hash_algorithm", required=True, choices=HASH_ALGORITHMS)
        v.string("issuer_name_hash", required=True, max_len=128)
        v.string("issuer_key_hash", required=True, max_len=128)
        v.string("serial_number", required=True, max_len=40)
    elif command_type == "GetInstalledCertificateIds":
        types = v.data.get("certificate_types", MISSING)
        allowed = (*INSTALLED_CERTIFICATE_TYPES, _CSMS_ROOT_16)
        if types is not MISSING and types is not None and (
            not isinstance(types, list) or not all(isinstance(t, str) and t in allowed for t in types)
        ):
            v.fail("certificate_types", "must be a list of " + ", ".join(INSTALLED_CERTIFICATE_TYPES))
    elif command_type == "SetVariables":
        _variables(v, with_value=True)
    elif command_type == "GetVariables":
        _variables(v, with_value=False)


def validate_command(body: dict[str, Any], default_timeout_s: float) -> tuple[str, dict[str, Any], float]:
    """(type, params, timeout seconds) or a 400 naming every bad field."""
    v = Validator(body)
    command_type = v.string("type", required=True, choices=COMMAND_TYPES)
    timeout = v.number("timeout", positive=True, maximum=MAX_TIMEOUT_S)
    if command_type is not MISSING:
        _params(v, command_type)
    params = {k: val for k, val in body.items() if k not in _ENVELOPE_KEYS}
    for key, value in params.items():
        if not _wire_json(value):
            v.fail(key, "must be JSON a station can read: integers within 64 bits, finite numbers")
    v.done()
    return command_type, params, float(default_timeout_s if timeout is MISSING else timeout)


def _wire_json(value: object) -> bool:
    """Whether the command can carry `value` (the router encodes commands with orjson,
    which refuses integers beyond 64 bits; NaN and Infinity are not JSON)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    if isinstance(value, dict):
        return all(_wire_json(v) for v in value.values())
    if isinstance(value, list):
        return all(_wire_json(v) for v in value)
    return True


class WaiterClosed(Exception):
    """The API is shutting down: the command was sent, its result will not be awaited here."""


class CommandWaiter:
    """Correlates CommandResult events with the requests waiting for them."""

    def __init__(self, bus: Bus, *, group: str | None = None) -> None:
        self.bus = bus
        self.group = group or topics.group(f"csms-api-{uuid.uuid4().hex[:8]}")
        self._pending: dict[str, asyncio.Future[CommandResult]] = {}
        self._sub: Subscription | None = None

    @property
    def running(self) -> bool:
        return self._sub is not None

    async def start(self) -> None:
        # Batches: this group reads every station event to find the few results, so the
        # per-fetch cost of a record-at-a-time consumer would dominate (ADR 015).
        self._sub = await self.bus.subscribe_batch(topics.EVENTS, self.group, self._on_batch, from_beginning=False)

    def release_all(self) -> None:
        """Wake every waiting request with WaiterClosed (shutdown must not wait for stations)."""
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(WaiterClosed())
        self._pending.clear()

    async def stop(self) -> None:
        self.release_all()
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.stop()

    def expect(self, command_id: str) -> asyncio.Future[CommandResult]:
        """Register before publishing, so a fast answer cannot be missed."""
        fut: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = fut
        return fut

    def forget(self, command_id: str) -> None:
        fut = self._pending.pop(command_id, None)
        if fut is not None and not fut.done():
            fut.cancel()

    async def wait(self, command_id: str, fut: asyncio.Future[CommandResult], timeout_s: float) -> CommandResult | None:
        """The result, or None after `timeout_s`; raises WaiterClosed on shutdown."""
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except asyncio.TimeoutError:
            return None
        finally:
            self.forget(command_id)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def _on_batch(self, records: Sequence[Record]) -> None:
        for record in records:
            await self._on_record(record)

    async def _on_record(self, record: Record) -> None:
        # Every station event passes here: look at the header, decode only results.
        if record.header("ce_type") != RESULT_CE_TYPE:
            return
        if not self._pending:
            return
        try:
            env = decode_event(record.value)
        except Exception:  # a bad record must not stall the consumer
            log.warning("undecodable CommandResult at %s[%d]@%d", record.topic, record.partition, record.offset)
            return
        body = env.body
        if not isinstance(body, CommandResult):
            return
        fut = self._pending.get(body.command_id)
        if fut is not None and not fut.done():
            fut.set_result(body)
