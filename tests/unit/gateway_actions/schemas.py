"""The ocpp library's JSON schemas, to check every answer and every built payload."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from typing import Any

import jsonschema
import ocpp

__all__ = ["request_validator", "response_validator", "wire"]


_cache: dict[tuple[str, str], Any] = {}


def _validator(version: str, name: str) -> Any:
    key = (version, name)
    if key not in _cache:
        folder = os.path.join(os.path.dirname(ocpp.__file__), "v" + version.replace(".", ""), "schemas")
        with open(os.path.join(folder, name + ".json"), encoding="utf-8-sig") as f:
            schema = json.loads(f.read(), parse_float=Decimal)
        cls = jsonschema.validators.validator_for(schema)  # Draft4 for 1.6, Draft6 for 2.x
        _cache[key] = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return _cache[key]


def request_validator(version: str, action: str) -> Any:
    return _validator(version, action if version == "1.6" else action + "Request")


def response_validator(version: str, action: str) -> Any:
    return _validator(version, action + "Response")


def wire(payload: dict[str, Any]) -> Any:
    """The payload as the station would parse it (floats as Decimal, for multipleOf)."""
    return json.loads(json.dumps(payload, default=_decimal_as_number), parse_float=Decimal)


def _decimal_as_number(value: object) -> object:
    """Money goes out as a JSON number (the gateway's orjson default does the same)."""
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value).__name__)
