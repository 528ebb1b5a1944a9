"""The documents the API writes and the values they hold: sites (kind `site`).

A site is a grid connection shared by stations. The API is the only writer of site
documents (services/common/kinds.py); smart charging reads them (and gets each change
as a `SiteUpdated` on csms.sites.v1, whose payload is this document). Tariffs are
written by the API too, but their shape is billing's (`services.billing.documents`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

__all__ = ["Site", "site_from_doc", "site_to_doc"]


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    grid_limit_a: float
    phases: int = 3
    tariff_id: str | None = None
    external_limit_a: float | None = None  # an outside cap (grid operator), A per phase
    created_at: str | None = None  # ISO 8601 UTC, as stored
    updated_at: str | None = None


def _amps(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def site_from_doc(doc: Mapping[str, Any]) -> Site:
    """The site a stored document describes (fields it lacks take their defaults)."""
    phases = doc.get("phases")
    tariff_id = doc.get("tariff_id")
    created, updated = doc.get("created_at"), doc.get("updated_at")
    return Site(
        id=str(doc["id"]),
        grid_limit_a=_amps(doc.get("grid_limit_a")) or 0,
        phases=phases if phases in (1, 3) else 3,
        tariff_id=tariff_id if isinstance(tariff_id, str) else None,
        external_limit_a=_amps(doc.get("external_limit_a")),
        created_at=created if isinstance(created, str) else None,
        updated_at=updated if isinstance(updated, str) else None,
    )


def site_to_doc(site: Site) -> dict[str, Any]:
    """The stored document: the site's fields as they are (the REST view shows the same)."""
    return asdict(site)
