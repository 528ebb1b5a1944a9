"""Payload validation against the OCA JSON schemas shipped with the ocpp library.

Schemas are compiled with fastjsonschema (to Python code: ~0.6 µs for a BootNotification)
lazily, once per (version, action), and cached for the life of the process. The failing
rule maps to the OCPP error (2.x spelling here; `errors.spell` adapts it to 1.6):

    required, minItems, maxItems          -> OccurrenceConstraintViolation
    type, maxLength                       -> TypeConstraintViolation (a CiString20 of 21
                                             characters is not of the CiString20 type;
                                             same choice as the ocpp library)
    enum, pattern, minimum, maximum,
    minLength, format, multipleOf, const  -> PropertyConstraintViolation
    additionalProperties and the rest     -> FormatViolation
"""

from __future__ import annotations

import os
from typing import Any, Callable

import fastjsonschema
import ocpp
import orjson

__all__ = ["request_actions", "validate", "Violation"]

Violation = tuple[str, str]  # (code, description)

_BASE = os.path.dirname(ocpp.__file__)
_FOLDER = {"1.6": "v16", "2.0.1": "v201", "2.1": "v21"}
# Stations send timestamps with Z, with an offset, and (some 1.6 firmware) with no zone;
# timeutil.parse_ocpp accepts all three, so validation does too.
_DATE_TIME = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})?$"

_RULE_CODE = {
    "required": "OccurrenceConstraintViolation",
    "minItems": "OccurrenceConstraintViolation",
    "maxItems": "OccurrenceConstraintViolation",
    "type": "TypeConstraintViolation",
    "maxLength": "TypeConstraintViolation",
    "enum": "PropertyConstraintViolation",
    "pattern": "PropertyConstraintViolation",
    "minimum": "PropertyConstraintViolation",
    "maximum": "PropertyConstraintViolation",
    "exclusiveMinimum": "PropertyConstraintViolation",
    "exclusiveMaximum": "PropertyConstraintViolation",
    "minLength": "PropertyConstraintViolation",
    "format": "PropertyConstraintViolation",
    "multipleOf": "PropertyConstraintViolation",
    "const": "PropertyConstraintViolation",
}

_validators: dict[tuple[str, str], Callable[[Any], Any]] = {}
_actions: dict[str, frozenset[str]] = {}


def _request_file(version: str, action: str) -> str:
    suffix = ".json" if version == "1.6" else "Request.json"
    return os.path.join(_BASE, _FOLDER[version], "schemas", action + suffix)


def request_actions(version: str) -> frozenset[str]:
    """Every action (either direction) that has a request schema in `version`; exact case."""
    known = _actions.get(version)
    if known is None:
        folder = os.path.join(_BASE, _FOLDER[version], "schemas")
        names: set[str] = set()
        for name in os.listdir(folder):
            if not name.endswith(".json") or name.endswith("Response.json"):
                continue
            names.add(name[: -len("Request.json")] if name.endswith("Request.json") else name[: -len(".json")])
        known = _actions[version] = frozenset(names)
    return known


def _compile(version: str, action: str) -> Callable[[Any], Any]:
    with open(_request_file(version, action), "rb") as f:
        raw = f.read()
    schema = orjson.loads(raw.removeprefix(b"\xef\xbb\xbf"))
    schema.pop("$id", None)  # urn: ids; nothing to resolve, keep fastjsonschema from trying
    return fastjsonschema.compile(schema, use_default=False, formats={"date-time": _DATE_TIME})  # type: ignore[no-any-return]


def validate(version: str, action: str, payload: Any) -> Violation | None:
    """None if valid; otherwise (code, description). `action` must be in request_actions()."""
    key = (version, action)
    check = _validators.get(key)
    if check is None:
        check = _validators[key] = _compile(version, action)
    try:
        check(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        return _RULE_CODE.get(exc.rule or "", "FormatViolation"), exc.message
    return None
