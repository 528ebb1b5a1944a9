"""Hypothesis strategies shared by the fuzz tests: JSON values with the odd corners a
hostile client reaches for (huge and tiny numbers, numbers as strings, control characters,
deep nesting, year-0 and year-99999 timestamps, ids with a trailing newline), and bodies
shaped after a JSON schema (its property names, enum values and types, each sometimes
replaced by something else) so the fuzzing reaches past the first "missing field" check."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

__all__ = ["json_values", "odd_strings", "odd_numbers", "odd_ids", "shaped_like", "resolve"]

Json = Any

odd_strings = st.sampled_from([
    "", " ", "\n", "CP1\n", "CP1\r\n", "\x00", "a" * 5000, "../../etc/passwd", "%0A", "é" * 10, "\ud7ff",
    "0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "99999-01-01T00:00:00Z", "1970-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z", "2026-01-01T00:00:00+25:00", "2026-01-01", "NaN", "Infinity", "-0", "1e999999",
    "1e-999999", "-1e400", "0.1e13", "123456789012345678901234567890", "true", "null", "[]", "{}",
    "Accepted", "Rejected", "ocpp1.6", "ocpp2.0.1", "admin", "viewer", "EUR", "XXX", "Europe/Berlin", "Mars/Olympus",
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "csms_x_y",
])

odd_numbers = st.one_of(
    st.sampled_from([0, -1, 1, 2, 3, 9, 2**31, 2**63, -(2**63) - 1, 10**30, 1e308, -1e308, 5e-324, 0.1, -0.0, 1.5]),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
)

odd_ids = st.one_of(
    st.sampled_from(["CP1\n", "a" * 500, "", " ", "x/y", "..", "%2F", "CP 1", "CP\t1", "ÄÖÜ", "0"]),
    st.text(min_size=1, max_size=40),
)

leaves = st.one_of(st.none(), st.booleans(), odd_numbers, odd_strings, st.text(max_size=60))

json_values = st.recursive(
    leaves,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(st.text(max_size=20), children, max_size=5)),
    max_leaves=25,
)


def resolve(doc: dict[str, Any], schema: Any) -> Any:
    """`schema` with a top-level `$ref` followed (one level at a time, as needed)."""
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 20:
        node: Any = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema, seen = node, seen + 1
    return schema


def _value_for(doc: dict[str, Any], schema: Any, depth: int) -> st.SearchStrategy[Json]:
    schema = resolve(doc, schema)
    if not isinstance(schema, dict) or depth > 3:
        return json_values
    options: list[st.SearchStrategy[Json]] = [json_values]
    if "enum" in schema and schema["enum"]:
        options.append(st.sampled_from(schema["enum"]))
    for key in ("oneOf", "anyOf"):
        for sub in schema.get(key, []) or []:
            options.append(_value_for(doc, sub, depth + 1))
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "object" in kinds or "properties" in schema:
        options.append(shaped_like(doc, schema, depth + 1))
    if "array" in kinds:
        options.append(st.lists(_value_for(doc, schema.get("items", {}), depth + 1), max_size=4))
    if "string" in kinds:
        options += [odd_strings, st.text(max_size=50)]
    if "integer" in kinds or "number" in kinds:
        options.append(odd_numbers)
    if "boolean" in kinds:
        options.append(st.booleans())
    return st.one_of(*options)


def shaped_like(doc: dict[str, Any], schema: Any, depth: int = 0) -> st.SearchStrategy[dict[str, Json]]:
    """Objects with (some of) the schema's property names, each value plausible or odd,
    sometimes with an unknown extra key."""
    schema = resolve(doc, schema)
    props: dict[str, Any] = schema.get("properties", {}) if isinstance(schema, dict) else {}
    if not props:
        return st.dictionaries(st.text(max_size=15), json_values, max_size=4)
    required = [k for k in schema.get("required", []) if k in props]
    optional = [k for k in props if k not in required]

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Json]:
        keys = list(required)
        # drop a required key now and then, add some optional ones
        if keys and draw(st.integers(0, 9)) == 0:
            keys.remove(draw(st.sampled_from(keys)))
        if optional:
            keys += draw(st.lists(st.sampled_from(optional), unique=True, max_size=len(optional)))
        body = {k: draw(_value_for(doc, props[k], depth)) for k in keys}
        if draw(st.integers(0, 9)) == 0:
            body[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
        return body

    return build()
