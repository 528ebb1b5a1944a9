"""OpenAPI fragments of operator access (ADR 017 §8): API keys, the audit log, whoami, and
the answers every secured operation can give (401, 403, 429).

`PATHS`, `SCHEMAS`, `VIEW_SCHEMAS`, `TAGS` as in openapi_operations.py; `RESPONSES`
(component responses) and `with_access_responses(paths)` (adds 403 and 429 to every
operation that needs a credential) are merged by services/api/openapi.py. This module
imports nothing of openapi.py (no cycle); the shared pieces are in openapi_parts.py.
"""

from __future__ import annotations

import copy
from typing import Any

from services.api.audit import DAYS_PER_PAGE
from services.api.keys import KEY_CACHE_S, MAX_NAME
from services.api.roles import ALL_ROLES
from services.api.routes_audit import RESULTS
from services.api.validation import DEFAULT_LIMIT, MAX_LIMIT
from services.api.openapi_parts import (  # the shared pieces, under this module's old names
    R400 as _R400, R401 as _R401, R403 as _R403, R404 as _R404, R422 as _R422, R429 as _R429, TS as _TS,
    NULL_TS as _NULL_TS, ref as _ref, json_content as _json, query as _query,
)

__all__ = ["PATHS", "RESPONSES", "SCHEMAS", "SECURITY_SCHEME", "TAGS", "VIEW_SCHEMAS", "with_access_responses"]

J = dict[str, Any]

TAGS = ("access",)
VIEW_SCHEMAS = ("ApiKey", "ApiKeyCreated", "ApiKeyList", "AuditEntry", "AuditPage", "WhoAmI")

_ROLE = {"type": "string", "enum": list(ALL_ROLES)}

SECURITY_SCHEME: J = {
    "type": "http",
    "scheme": "bearer",
    "description": (
        "An API key (`csms_<id>_<secret>`, from `csms api-key create` or POST /api/v1/api-keys), the bootstrap "
        "key CSMS_API_KEY (role admin), or, with CSMS_OIDC_JWKS_URL, an OIDC access token (RS256/ES256 JWT) "
        "whose CSMS_OIDC_ROLE_CLAIM names a role. Roles: " + ", ".join(ALL_ROLES) + " (docs/security.md)."
    ),
}


def _op(summary: str, responses: J, *, op_id: str, params: list[J] | None = None, body: J | None = None,
        description: str = "") -> J:
    op: J = {"summary": summary, "operationId": op_id, "tags": ["access"], "responses": {**responses, "401": _R401}}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _strict(properties: J, required: list[str] | None = None) -> J:
    return {"type": "object", "required": list(properties) if required is None else required,
            "additionalProperties": False, "properties": properties}


_KEY_FIELDS: J = {
    "id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
    "name": {"type": "string"},
    "role": _ROLE,
    "created_at": _TS,
    "created_by": {"type": "string", "description": "The actor that created it (`bootstrap`, `key:<id>`, `oidc:<sub>`)."},
    "expires_at": _NULL_TS,
    "revoked_at": _NULL_TS,
    "last_used_at": {**_NULL_TS, "description": "Written at most once a minute."},
}

SCHEMAS: J = {
    "ApiKeyCreate": {
        "type": "object", "required": ["name", "role"], "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME,
                     "description": "Printable characters only (no control characters or line breaks), "
                                    "not only spaces."},
            "role": _ROLE,
            "expires_at": {**_NULL_TS, "description": "After this time the key is refused (must be in the future)."},
        },
    },
    "ApiKey": _strict(_KEY_FIELDS),
    "ApiKeyCreated": _strict({
        "id": _KEY_FIELDS["id"], "name": _KEY_FIELDS["name"], "role": _ROLE,
        "key": {"type": "string", "pattern": "^csms_[0-9a-f]{16}_[A-Za-z0-9_-]+$",
                "description": "The key: shown in this answer only, never again (the store keeps its HMAC)."},
        "created_at": _TS, "expires_at": _NULL_TS,
    }),
    "ApiKeyList": _strict({"items": {"type": "array", "items": _ref("ApiKey")}}),
    "AuditEntry": _strict({
        "id": {"type": "string", "description": "Unique; sorts by time."},
        "at": _TS,
        "actor": {"type": "string", "description": "`bootstrap`, `key:<id>`, `oidc:<subject>` or `anonymous`."},
        "role": {"type": "string", "description": "The caller's role (empty when authentication failed)."},
        "action": {"type": "string", "examples": ["PATCH /api/v1/stations/{id}"]},
        "target": {"type": "string", "examples": ["station:CP-1"]},
        "status": {"type": "integer", "description": "HTTP status of the answer."},
        "result": {"type": "string", "enum": list(RESULTS)},
        "source": {"type": "string", "description": "Client address (X-Forwarded-For only from CSMS_TRUSTED_PROXIES)."},
        "request_id": {"type": "string"},
        "detail": {"type": "string", "description": "A short reason for failures; never a credential."},
    }),
    "AuditPage": _strict({
        "items": {"type": "array", "items": _ref("AuditEntry")},
        "next": {"type": ["string", "null"], "description": "Cursor of the next (older) page; null: no more."},
    }),
    "WhoAmI": _strict({"actor": {"type": "string"}, "role": _ROLE}),
}

RESPONSES: J = {
    "Forbidden": {
        "description": "The caller's role may not do this (`role <r> may not <METHOD> <route>`).",
        "content": {"application/json": {"schema": _ref("Error")}},
    },
    "TooManyFailures": {
        "description": "Too many wrong credentials from this address this minute (CSMS_API_AUTH_FAIL_LIMIT).",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
        "content": {"application/json": {"schema": _ref("Error")}},
    },
}

_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}, "description": "Key id."}]
_LIMIT = _query("limit", f"Maximum number of items (default {DEFAULT_LIMIT}).",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT})

PATHS: J = {
    "/api/v1/api-keys": {
        "post": _op(
            "Create an API key (admin)", {"201": _json(_ref("ApiKeyCreated"), "Created; `key` is shown only here."),
                                          "400": _R400},
            op_id="createApiKey", body=_ref("ApiKeyCreate"),
        ),
        "get": _op("List API keys (admin; never the keys)", {"200": _json(_ref("ApiKeyList"), "Keys, newest first.")},
                   op_id="listApiKeys"),
    },
    "/api/v1/api-keys/{id}": {
        "parameters": _ID,
        "delete": _op(
            "Revoke an API key (admin)", {"200": _json(_ref("ApiKey"), "The key with `revoked_at`."), "404": _R404},
            op_id="revokeApiKey",
            description=f"Immediate on the answering API instance; on the others within {KEY_CACHE_S:g} s.",
        ),
    },
    "/api/v1/audit": {
        "get": _op(
            "The audit log (admin)", {"200": _json(_ref("AuditPage"), "Entries, newest first."), "422": _R422},
            op_id="listAudit",
            params=[
                _query("actor", "Exactly this actor."),
                _query("action", "Exactly this action, e.g. `PATCH /api/v1/stations/{id}`."),
                _query("target", "Exactly this target, e.g. `station:CP-1`."),
                _query("result", "Exactly this result.", {"type": "string", "enum": list(RESULTS)}),
                _query("since", "Entries at or after this time.", {"type": "string", "format": "date-time"}),
                _query("until", "Entries before this time.", {"type": "string", "format": "date-time"}),
                _LIMIT,
                _query("cursor", "The `next` of the previous page."),
            ],
            description=(
                "One entry per POST/PUT/PATCH/DELETE under /api/v1 (any outcome) and per refused authentication. "
                f"A page looks at up to {DAYS_PER_PAGE} days: a short page can still have a `next`."
            ),
        ),
    },
    "/api/v1/whoami": {
        "get": _op("Who the credentials are", {"200": _json(_ref("WhoAmI"), "Actor and role.")}, op_id="whoAmI"),
    },
}


def with_access_responses(paths: J) -> J:
    """`paths` with 403 and 429 added to every operation that needs a credential."""
    out = copy.deepcopy(paths)
    for item in out.values():
        for method, op in item.items():
            if method == "parameters" or not isinstance(op, dict) or op.get("security") == []:
                continue
            op["responses"].setdefault("403", _R403)
            op["responses"].setdefault("429", _R429)
    return out
