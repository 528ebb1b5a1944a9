"""Station -> CSMS action handlers, looked up by (OCPP version, action).

`Actions(ports)` builds every handler once per gateway from the ports they use (each
version module's table maps an action to its handler's factory); 2.1 reuses the 2.0.1
handlers where the action exists. `handler_for` returns None for an action we do not
know as station -> CSMS; the core then uses `is_csms_to_station` to tell "exists, but
only the other way" (answer NotSupported) from "unknown" (answer NotImplemented).
Actions are case-sensitive.
"""

from __future__ import annotations

import os
from functools import lru_cache

import ocpp

from services.common.ocpp_version import OcppVersion
from services.gateway.actions import v16, v201
from services.gateway.actions.common import ActionPorts, Factory, Handler

__all__ = ["ActionPorts", "Actions", "Handler", "is_csms_to_station", "station_actions"]

_FACTORIES: dict[OcppVersion, dict[str, Factory]] = {
    OcppVersion.V16: v16.HANDLERS,
    OcppVersion.V201: v201.HANDLERS,
    OcppVersion.V21: {**v201.HANDLERS, **v201.HANDLERS_21_ONLY},
}

# Station -> CSMS actions of 2.1 that we do not handle (no simple answer, or a SEND
# without a response): unknown to `handler_for`, yet not CSMS -> station either.
_STATION_ONLY_UNHANDLED: dict[str, frozenset[str]] = {
    OcppVersion.V21: frozenset({"GetCertificateChainStatus", "NotifyPeriodicEventStream"}),
}


class Actions:
    """The handlers of one gateway, built from its ports."""

    __slots__ = ("_tables",)

    def __init__(self, ports: ActionPorts) -> None:
        v16_table = {action: make(ports) for action, make in v16.HANDLERS.items()}
        v201_table = {action: make(ports) for action, make in v201.HANDLERS.items()}
        v21_table = {**v201_table, **{action: make(ports) for action, make in v201.HANDLERS_21_ONLY.items()}}
        self._tables: dict[str, dict[str, Handler]] = {
            OcppVersion.V16: v16_table, OcppVersion.V201: v201_table, OcppVersion.V21: v21_table,
        }

    def handler_for(self, ocpp_version: str, action: str) -> Handler | None:
        table = self._tables.get(ocpp_version)
        return None if table is None else table.get(action)


def station_actions(ocpp_version: str) -> frozenset[str]:
    """The station -> CSMS actions we handle for a version."""
    for version, table in _FACTORIES.items():
        if version == ocpp_version:
            return frozenset(table)
    return frozenset()


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
    if not station_actions(ocpp_version):
        return False
    station_side = station_actions(ocpp_version) | _STATION_ONLY_UNHANDLED.get(ocpp_version, frozenset())
    return action in _schema_actions(ocpp_version) and action not in station_side
