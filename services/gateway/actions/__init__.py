"""Station -> CSMS action handlers, looked up by (OCPP version, action).

`handler_for` returns None for an action we do not know as station -> CSMS; the core
then uses `is_csms_to_station` to tell "exists, but only the other way" (answer
NotSupported) from "unknown" (answer NotImplemented). Actions are case-sensitive.
"""

from __future__ import annotations

import os
from functools import lru_cache

import ocpp

from services.gateway.actions import v16, v201
from services.gateway.actions.common import Handler

__all__ = ["Handler", "handler_for", "is_csms_to_station", "station_actions"]

_HANDLERS: dict[str, dict[str, Handler]] = {
    "1.6": v16.HANDLERS,
    "2.0.1": v201.HANDLERS,
    "2.1": v201.HANDLERS_21,  # 2.1 uses the 2.0.1 handlers where the action exists
}

# Station -> CSMS actions of 2.1 that we do not handle (no simple answer, or a SEND
# without a response): unknown to `handler_for`, yet not CSMS -> station either.
_STATION_ONLY_UNHANDLED = {
    "2.1": frozenset({"GetCertificateChainStatus", "NotifyPeriodicEventStream"}),
}


def handler_for(ocpp_version: str, action: str) -> Handler | None:
    return _HANDLERS.get(ocpp_version, {}).get(action)


def station_actions(ocpp_version: str) -> frozenset[str]:
    """The station -> CSMS actions we handle for a version."""
    return frozenset(_HANDLERS.get(ocpp_version, {}))


@lru_cache(maxsize=None)
def _schema_actions(ocpp_version: str) -> frozenset[str]:
    # The library ships one request and one response schema per action and version, so
    # its schema folder is the authoritative list of the version's actions.
    folder = os.path.join(os.path.dirname(ocpp.__file__), "v" + ocpp_version.replace(".", ""), "schemas")
    if not os.path.isdir(folder):
        return frozenset()
    names = set()
    for file in os.listdir(folder):
        if file.endswith(".json"):
            name = file[: -len(".json")]
            for suffix in ("Response", "Request"):
                if name.endswith(suffix):
                    name = name[: -len(suffix)]
                    break
            names.add(name)
    return frozenset(names)


def is_csms_to_station(ocpp_version: str, action: str) -> bool:
    """True if `action` exists in this version only in the CSMS -> station direction."""
    if ocpp_version not in _HANDLERS:
        return False
    station_side = station_actions(ocpp_version) | _STATION_ONLY_UNHANDLED.get(ocpp_version, frozenset())
    return action in _schema_actions(ocpp_version) and action not in station_side
