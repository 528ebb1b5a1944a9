"""Store objects -> REST JSON shapes (never a password hash or fingerprint)."""

from __future__ import annotations

from typing import Any

from services.common.store.port import Owner, Station, Token
from services.common.timeutil import to_ocpp

__all__ = ["station_view", "token_view", "connectors_view", "session_view"]

# Bookkeeping of the sessions processor that is not part of the session's public shape:
# samples of a document from before ADR 015 (now behind /sessions/{id}/meter-values) and
# the processor's own marks (applied record position, thinning level, judgement inputs).
_SESSION_INTERNAL = frozenset({"meter_samples", "_state"})

def _ts(value: Any) -> str | None:
    return None if value is None else to_ocpp(value)


def _connector_sort_key(key: str) -> tuple[int, int, str]:
    evse, _, conn = key.partition("/")
    try:
        return (int(evse), int(conn or 0), key)
    except ValueError:
        return (1 << 31, 0, key)


def connectors_view(raw: Any) -> list[dict[str, Any]]:
    """{"evse/connector": {status, error_code, at}} -> sorted [{evse_id, connector_id, ...}]."""
    if isinstance(raw, list):
        return [c for c in raw if isinstance(c, dict)]
    if not isinstance(raw, dict):
        return []
    out: list[dict[str, Any]] = []
    for key in sorted(raw, key=_connector_sort_key):
        value = raw[key] if isinstance(raw[key], dict) else {"status": raw[key]}
        evse, _, conn = str(key).partition("/")
        item: dict[str, Any] = {}
        try:
            item["evse_id"], item["connector_id"] = int(evse), int(conn or 0)
        except ValueError:
            item["key"] = key
        item.update(value)
        out.append(item)
    return out


def station_view(station: Station, owner: Owner | None, status: dict[str, Any] | None) -> dict[str, Any]:
    status = status or {}
    connected = bool(owner is not None and owner.connected)
    boot = status.get("boot")
    return {
        "id": station.id,
        "site_id": station.site_id,
        "tariff_id": station.tariff_id,
        "enabled": station.enabled,
        "created_at": _ts(station.created_at),
        "connected": connected,
        "ocpp_version": status.get("ocpp_version") or None,
        "gateway_id": owner.gateway_id if connected and owner is not None else None,
        "last_boot": dict(boot) if isinstance(boot, dict) and boot else None,
        "connectors": connectors_view(status.get("connectors")),
        "last_seen": status.get("last_seen"),
        "max_current_a": station.max_current_a,
        "phases": station.phases,
        "priority": station.priority,
        "has_password": bool(station.password_hash or station.password_fingerprint),
    }


def token_view(token: Token) -> dict[str, Any]:
    return {
        "id_token": token.id_token,
        "status": token.status,
        "expires_at": _ts(token.expires_at),
        "group_id": token.group_id,
        "updated_at": _ts(token.updated_at),
    }


def session_view(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored session document as the REST API shows it: compact (facts and bounded
    aggregates), never its samples (ADR 015)."""
    return {k: v for k, v in doc.items() if k not in _SESSION_INTERNAL}
