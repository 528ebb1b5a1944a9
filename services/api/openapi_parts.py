"""The small pieces every OpenAPI fragment module is written with (openapi.py and the
fragments it merges: openapi_operations, openapi_security, openapi_access). A module of
its own so the fragments need not import openapi.py (which imports them)."""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "J", "ERR", "R400", "R401", "R403", "R404", "R409", "R422", "R429", "TS", "NULL_TS", "NULL_STR", "NULL_NUM", "NULL_INT",
    "ref", "json_content", "error", "path_param", "query", "closed_object", "operation",
]

J = dict[str, Any]

ERR: Final = "#/components/responses/"
R400: Final = {"$ref": ERR + "BadRequest"}
R401: Final = {"$ref": ERR + "Unauthorized"}
R403: Final = {"$ref": ERR + "Forbidden"}
R404: Final = {"$ref": ERR + "NotFound"}
R409: Final = {"$ref": ERR + "Conflict"}
R422: Final = {"$ref": ERR + "UnprocessableQuery"}
R429: Final = {"$ref": ERR + "TooManyFailures"}
TS: Final = {"type": "string", "format": "date-time", "examples": ["2026-11-28T04:21:16.004Z"]}
NULL_TS: Final = {"type": ["string", "null"], "format": "date-time"}
NULL_STR: Final = {"type": ["string", "null"]}
NULL_NUM: Final = {"type": ["number", "null"]}
NULL_INT: Final = {"type": ["integer", "null"]}


def ref(name: str) -> J:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: J, description: str) -> J:
    """A response (or request body) whose content is JSON of `schema`."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error(description: str) -> J:
    return json_content(ref("Error"), description)


def path_param(name: str, description: str) -> J:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


def query(name: str, description: str, schema: J | None = None) -> J:
    return {"name": name, "in": "query", "required": False, "schema": schema or {"type": "string"},
            "description": description}


def closed_object(required: list[str], properties: J, description: str = "") -> J:
    """An object schema that allows no other keys (a view the tests check real answers against)."""
    out: J = {"type": "object", "required": required, "additionalProperties": False, "properties": properties}
    if description:
        out["description"] = description
    return out


def operation(tag: str, summary: str, responses: J, *, op_id: str, params: list[J] | None = None,
              body: J | None = None, description: str = "") -> J:
    """One operation of a path: JSON request body (when given), the 401 answer added."""
    op: J = {"summary": summary, "operationId": op_id, "tags": [tag], "responses": {**responses, "401": R401}}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op
