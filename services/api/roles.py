"""Who may call what: the operator roles and the table from (method, route) to the roles allowed.

The table is docs/security.md "Roles". Rules match a route *template* (the aiohttp
resource's canonical path, e.g. `/api/v1/stations/{id}/trust-anchors/{serial_number}`) by
regular expression, first match wins, so a route added later under an existing family
(a new `/stations/{id}/...` sub-resource) is covered without touching this file; the more
specific families (station credentials, a station's commands) come before the general
one. A route no rule matches is allowed to `admin` only, and `create_app` logs it once at
start (`unruled_routes`), so a forgotten rule fails closed and is visible.

GET and HEAD are reads; every other method is a write.

`POST /stations/{id}/commands` is open to installers only for configuration and
maintenance command types (INSTALLER_COMMANDS). That check needs the body: the auth
middleware reads it for that one route (`needs_command_type`) and calls
`command_allowed(role, type)`; the route parses the same cached body again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Iterable

__all__ = [
    "ALL_ROLES",
    "INSTALLER_COMMANDS",
    "RULES",
    "Rule",
    "allowed",
    "command_allowed",
    "is_read",
    "most_privileged",
    "needs_command_type",
    "rule_for",
    "unruled_routes",
]

ADMIN, OPERATOR, INSTALLER, BILLING, VIEWER = "admin", "operator", "installer", "billing", "viewer"
# most privileged first: an OIDC token carrying several roles gets the first one it has
ALL_ROLES: Final = (ADMIN, OPERATOR, INSTALLER, BILLING, VIEWER)

READ_METHODS: Final = frozenset({"GET", "HEAD"})

INSTALLER_COMMANDS: Final = frozenset({
    "Reset", "ChangeConfiguration", "GetConfiguration", "SetVariables", "GetVariables",
    "GetBaseReport", "GetReport", "TriggerMessage", "UpdateFirmware", "GetDiagnostics", "GetLog",
    "SetNetworkProfile", "ChangeAvailability",
    # the certificate commands
    "CertificateSigned", "InstallCertificate", "DeleteCertificate", "GetInstalledCertificateIds",
})

_P = "/api/v1"


@dataclass(frozen=True, slots=True)
class Rule:
    family: str
    pattern: re.Pattern[str]
    read: frozenset[str]
    write: frozenset[str]
    methods: frozenset[str] | None = None  # None: every method


def _rule(family: str, pattern: str, read: Iterable[str], write: Iterable[str],
          methods: Iterable[str] | None = None) -> Rule:
    return Rule(family, re.compile(_P + pattern + r"\Z"), frozenset(read), frozenset(write),
                None if methods is None else frozenset(methods))


_ALL = ALL_ROLES
RULES: Final[tuple[Rule, ...]] = (
    _rule("whoami", r"/whoami", _ALL, ()),
    _rule("api-keys", r"/api-keys(/.*)?", [ADMIN], [ADMIN]),
    _rule("audit", r"/audit(/.*)?", [ADMIN], [ADMIN]),
    _rule("dead letters", r"/dead-letters(/.*)?", [ADMIN], [ADMIN]),
    _rule("station credentials",
          r"/stations/\{[^}/]+\}/(password|security-profile|certificates|trust-anchors)(/.*)?",
          [ADMIN, OPERATOR, INSTALLER], [ADMIN, INSTALLER]),
    # tokens on a station's local list, and a driver's personal data (ADR 018)
    _rule("local lists", r"/stations/\{[^}/]+\}/local-list(/.*)?", [ADMIN, OPERATOR, VIEWER], [ADMIN, OPERATOR]),
    _rule("customer information", r"/stations/\{[^}/]+\}/customer-information(/.*)?", [ADMIN, OPERATOR], [ADMIN, OPERATOR]),
    # installers: only the types in INSTALLER_COMMANDS (checked with the body, see module doc)
    _rule("station commands", r"/stations/\{[^}/]+\}/commands", (), [ADMIN, OPERATOR, INSTALLER], ["POST"]),
    _rule("stations", r"/stations(/.*)?", _ALL, [ADMIN, OPERATOR, INSTALLER]),
    _rule("stations", r"/commands(/.*)?", _ALL, [ADMIN, OPERATOR, INSTALLER]),
    _rule("stations", r"/firmware-campaigns(/.*)?", _ALL, [ADMIN, OPERATOR, INSTALLER]),
    _rule("stations", r"/kpis/availability(/.*)?", _ALL, [ADMIN, OPERATOR, INSTALLER]),
    _rule("reservations", r"/reservations(/.*)?", [ADMIN, OPERATOR, VIEWER], [ADMIN, OPERATOR]),
    _rule("tokens", r"/tokens(/.*)?", [ADMIN, OPERATOR, VIEWER], [ADMIN, OPERATOR]),
    _rule("sessions", r"/sessions(/.*)?", [ADMIN, OPERATOR, BILLING, VIEWER], [ADMIN, OPERATOR]),
    _rule("tariffs", r"/tariffs(/.*)?", [ADMIN, OPERATOR, BILLING, VIEWER], [ADMIN, BILLING]),
    _rule("cdrs", r"/cdrs(/.*)?", [ADMIN, OPERATOR, BILLING, VIEWER], [ADMIN, BILLING]),
    _rule("sites", r"/sites(/.*)?", _ALL, [ADMIN, OPERATOR]),
)


def is_read(method: str) -> bool:
    return method.upper() in READ_METHODS


def rule_for(method: str, template: str) -> Rule | None:
    m = method.upper()
    for rule in RULES:
        if (rule.methods is None or m in rule.methods) and rule.pattern.match(template):
            return rule
    return None


def allowed(role: str, method: str, template: str) -> bool:
    """Whether `role` may call `method template`; a route without a rule is admin-only."""
    rule = rule_for(method, template)
    if rule is None:
        return role == ADMIN
    return role in (rule.read if is_read(method) else rule.write)


def needs_command_type(role: str, method: str, template: str) -> bool:
    """Whether the command type in the body decides (an installer sending a station command)."""
    return role == INSTALLER and method.upper() == "POST" and bool(re.fullmatch(
        _P + r"/stations/\{[^}/]+\}/commands", template))


def command_allowed(role: str, command_type: object) -> bool:
    """Whether `role` may send a station command of `command_type` (installers: configuration
    and maintenance types only). A type that is not a string is left to the route's 400."""
    if role != INSTALLER:
        return role in (ADMIN, OPERATOR)
    return not isinstance(command_type, str) or command_type in INSTALLER_COMMANDS


def most_privileged(claimed: Iterable[str]) -> str | None:
    """The most privileged known role among `claimed` (unknown names ignored)."""
    have = set(claimed)
    return next((r for r in ALL_ROLES if r in have), None)


def unruled_routes(routes: Iterable[tuple[str, str]], public: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(method, template) pairs under /api/v1 that no rule covers (public paths excepted)."""
    skip = set(public)
    return [(m, t) for m, t in routes
            if (t == _P or t.startswith(_P + "/")) and t not in skip and rule_for(m, t) is None]
