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

Transaction messages are lenient (`check`; docs/gateway-leniency.md). Refusing a
StopTransaction because its reason is spelled `local` makes the station retry it, then
drop it, and the transaction never ends. So for the actions in `LENIENT_ACTIONS`, a
payload the strict schema refuses gets a second chance against a *relaxed* schema,
derived from the same OCA file with the vocabulary constraints removed (enum, format,
additionalProperties: false, type "number"; integral numbers count as integers, as in
the 2.x schemas' draft 6). What the relaxed schema still refuses
(missing required fields, wrong JSON types for ids and counters, not an object, ...)
gets the strict check's CALLERROR. What it accepts is walked once, driven by the strict
schema: enum values are canonicalised case-insensitively ("kwh" -> "kWh"), unknown ones,
bad timestamps, unknown properties and non-numeric measurements are kept as sent, and
each is reported as a `Lenient` note (field = JSON path without indexes, from the
schema: a bounded set) for the caller to count and log. The strict path is unchanged:
the relaxed schema and the walk run only for payloads the strict schema refused.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import fastjsonschema
import ocpp
import orjson

from services.common.ocpp_version import OcppVersion

__all__ = ["request_actions", "validate", "check", "relax", "Violation", "Lenient", "LENIENT_ACTIONS"]

Violation = tuple[str, str]  # (code, description)

_BASE = os.path.dirname(ocpp.__file__)
_FOLDER: dict[str, str] = {OcppVersion.V16: "v16", OcppVersion.V201: "v201", OcppVersion.V21: "v21"}
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
    suffix = ".json" if version == OcppVersion.V16 else "Request.json"
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


def _load(version: str, action: str) -> dict[str, Any]:
    with open(_request_file(version, action), "rb") as f:
        raw = f.read()
    schema = orjson.loads(raw.removeprefix(b"\xef\xbb\xbf"))
    schema.pop("$id", None)  # urn: ids; nothing to resolve, keep fastjsonschema from trying
    return schema  # type: ignore[no-any-return]


def _compile_schema(schema: dict[str, Any]) -> Callable[[Any], Any]:
    return fastjsonschema.compile(schema, use_default=False, formats={"date-time": _DATE_TIME})


def _compile(version: str, action: str) -> Callable[[Any], Any]:
    return _compile_schema(_load(version, action))


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


# -- lenient transaction messages -------------------------------------------------------

_TX_ACTIONS = frozenset({"TransactionEvent", "MeterValues"})
LENIENT_ACTIONS: dict[str, frozenset[str]] = {
    OcppVersion.V16: frozenset({"StartTransaction", "StopTransaction", "MeterValues"}),
    OcppVersion.V201: _TX_ACTIONS,
    OcppVersion.V21: _TX_ACTIONS,
}
# Enums whose value decides what the message means: canonicalised like any other, but an
# unknown value is refused (a TransactionEvent that is neither Started, Updated nor Ended
# cannot be applied). Every other enum describes a reading or a reason and is kept raw.
_ESSENTIAL_ENUMS: dict[str, frozenset[str]] = {"TransactionEvent": frozenset({"eventType"})}
_MAX_DETAIL = 120
_DATE_TIME_RE = re.compile(_DATE_TIME)


class Lenient(NamedTuple):
    """One field the lenient pass accepted although the strict schema would not."""

    field: str      # JSON path without indexes, e.g. "meterValue.sampledValue.unit"
    kind: str       # "canonicalised" | "kept_raw" | "ignored" (an unknown property)
    detail: str     # what was wrong, for the log line


@dataclass(slots=True)
class _Node:
    """The strict schema of one position, reduced to what the walk needs."""

    enum: frozenset[str] | None = None
    folded: dict[str, str] | None = None    # casefold -> canonical spelling
    date_time: bool = False
    number: bool = False
    props: dict[str, "_Node"] | None = None
    closed: bool = False                     # additionalProperties: false
    items: "_Node | None" = None


@dataclass(slots=True)
class _Plan:
    check: Callable[[Any], Any]              # the relaxed schema, compiled
    root: _Node
    essential: frozenset[str] = field(default_factory=frozenset)


_plans: dict[tuple[str, str], _Plan] = {}


def _relax(node: Any) -> Any:
    """A copy of a schema (sub)tree without the constraints the lenient pass handles itself."""
    if isinstance(node, list):
        return [_relax(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "definitions", "patternProperties"):
            out[key] = {name: _relax(sub) for name, sub in value.items()}
        elif key == "enum" or (key == "format" and isinstance(value, str)):
            continue
        elif key == "additionalProperties" and value is False:
            continue
        elif key == "type" and value == "number":
            continue  # a measurement, not an id or a counter: kept raw when not a number
        else:
            out[key] = _relax(value)
    return out


def _build(node: Any, definitions: dict[str, Any], memo: dict[str, _Node]) -> _Node:
    ref = node.get("$ref") if isinstance(node, dict) else None
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in memo:
            return memo[name]
        built = memo[name] = _Node()  # placed first: a self-referencing schema terminates
        _fill(built, definitions.get(name, {}), definitions, memo)
        return built
    built = _Node()
    if isinstance(node, dict):
        _fill(built, node, definitions, memo)
    return built


def _fill(built: _Node, node: dict[str, Any], definitions: dict[str, Any], memo: dict[str, _Node]) -> None:
    enum = node.get("enum")
    if isinstance(enum, list):
        values = [v for v in enum if isinstance(v, str)]
        built.enum = frozenset(values)
        built.folded = {v.casefold(): v for v in values}
    built.date_time = node.get("format") == "date-time"
    built.number = node.get("type") == "number"
    props = node.get("properties")
    if isinstance(props, dict):
        built.props = {name: _build(sub, definitions, memo) for name, sub in props.items()}
    built.closed = node.get("additionalProperties") is False
    items = node.get("items")
    if isinstance(items, dict):
        built.items = _build(items, definitions, memo)


def _plan(version: str, action: str) -> _Plan:
    key = (version, action)
    plan = _plans.get(key)
    if plan is None:
        schema = _load(version, action)
        root = _build(schema, schema.get("definitions", {}), {})
        relaxed = _relax(schema)
        if "draft-04" in str(schema.get("$schema", "")):
            # JSON has one number type: 1180591620717411303424 is an integer, although orjson
            # reads it as a float and draft 4 then says "must be integer". Draft 6 (the 2.x
            # schemas' draft) counts integral numbers as integers; the handlers range-check.
            relaxed["$schema"] = "http://json-schema.org/draft-06/schema#"
        plan = _plans[key] = _Plan(_compile_schema(relaxed), root, _ESSENTIAL_ENUMS.get(action, frozenset()))
    return plan


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def _walk(node: _Node, value: Any, path: str, notes: list[Lenient]) -> Any:
    """Canonicalise `value` (already valid against the relaxed schema) in place and note
    every deviation from the strict schema. Returns the value to store at this position."""
    if node.enum is not None and isinstance(value, str):
        if value in node.enum:
            return value
        canonical = node.folded.get(value.casefold()) if node.folded else None
        if canonical is not None:
            notes.append(Lenient(path, "canonicalised", f"{_short(value)} -> {canonical!r}"))
            return canonical
        notes.append(Lenient(path, "kept_raw", f"{_short(value)} is not one of the schema's values"))
        return value
    if node.date_time and isinstance(value, str):
        if _DATE_TIME_RE.match(value) is None:
            notes.append(Lenient(path, "kept_raw", f"{_short(value)} is not an RFC 3339 date-time"))
        return value
    if node.number:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            notes.append(Lenient(path, "kept_raw", f"{_short(value)} is not a number"))
        return value
    if isinstance(value, dict) and (node.props is not None or node.closed):
        props = node.props or {}
        prefix = path + "." if path else ""
        for key in list(value):
            sub = props.get(key)
            if sub is None:
                if node.closed:
                    notes.append(Lenient(prefix + "*", "ignored", f"unknown property {_short(key)}"))
                continue
            new = _walk(sub, value[key], prefix + key, notes)
            if new is not value[key]:
                value[key] = new
        return value
    if isinstance(value, list) and node.items is not None:
        for i, item in enumerate(value):
            new = _walk(node.items, item, path, notes)
            if new is not item:
                value[i] = new
    return value


def check(version: str, action: str, payload: Any) -> tuple[Violation | None, list[Lenient]]:
    """Strict validation, then for `LENIENT_ACTIONS` the lenient pass (module docstring).

    Returns (None, notes) when the payload may be handled; `payload` may then have been
    canonicalised in place and `notes` lists every field accepted leniently. Otherwise
    (the strict violation, [])."""
    strict = validate(version, action, payload)
    if strict is None:
        return None, []
    return relax(version, action, payload, strict)


def relax(version: str, action: str, payload: Any, strict: Violation) -> tuple[Violation | None, list[Lenient]]:
    """The lenient pass for a payload the strict schema refused with `strict` (`check`
    without repeating the strict validation)."""
    if action not in LENIENT_ACTIONS.get(version, ()):
        return strict, []
    plan = _plan(version, action)
    try:
        plan.check(payload)
    except fastjsonschema.JsonSchemaValueException:
        return strict, []
    notes: list[Lenient] = []
    _walk(plan.root, payload, "", notes)
    for note in notes:
        if note.kind == "kept_raw" and note.field in plan.essential:
            return strict, []
    return None, notes
