"""Request parsing and field validation: every problem is reported at once, per field.

Numbers are bounded (`services.common.decimals`): a JSON number read exactly as a
Decimal ("1e-999999", "1e400") is refused with a 400 naming the field, never carried
into a megabyte document or an overflowing quantize. Money is validated by the billing
codec (`tariff_from_dict`), which applies the same bound to decimal strings.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Iterable

from aiohttp import web

from services.api.errors import bad_request, validation_error
from services.common.decimals import MAX_ABS_EXPONENT, bounded, parse_decimal
from services.common.timeutil import parse_ocpp

__all__ = [
    "MISSING",
    "Validator",
    "read_json",
    "query_limit",
    "check_station_id",
    "check_resource_id",
    "STATION_ID_RE",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# The gateway's rule for an OCPP identity (it appears in the URL path /ocpp/{id}).
STATION_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,48}$")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


async def read_json(request: web.Request, *, parse_float: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """The request body as a JSON object; 400 for anything else."""
    raw = await request.read()
    if not raw:
        raise bad_request("request body must be a JSON object")
    try:
        data = json.loads(raw, parse_float=parse_float)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request("request body must be a JSON object")
    return data


def query_limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise validation_error({"limit": f"must be an integer from 1 to {MAX_LIMIT}"})
    return value


def check_station_id(value: object) -> str | None:
    """None if acceptable, else why not."""
    if not isinstance(value, str):
        return "must be a string"
    if not STATION_ID_RE.match(value):
        return "must be 1-48 characters of A-Z a-z 0-9 . _ -"
    if ".." in value or value == ".":
        return "must not be '.' or contain '..'"
    return None


_RESOURCE_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def check_resource_id(value: object) -> str | None:
    """Ids of tariffs and sites (they appear in URL paths): None if acceptable, else why not."""
    if not isinstance(value, str):
        return "must be a string"
    if not _RESOURCE_ID_RE.match(value) or ".." in value:
        return "must be 1-64 characters of A-Z a-z 0-9 . _ : - (no '..')"
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _bounded_number(value: object) -> bool:
    """A finite number within the bound of services.common.decimals (ints and floats are
    compared by magnitude; a Decimal by its exponent and its text length)."""
    if isinstance(value, Decimal):
        return parse_decimal(str(value)) is not None
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf")) and bounded(Decimal(repr(value)))
    if isinstance(value, int):
        return parse_decimal(value) is not None
    return False


_OUT_OF_RANGE = f"must be a finite number of magnitude 1e-{MAX_ABS_EXPONENT} to 1e{MAX_ABS_EXPONENT}"


class Validator:
    """Reads fields of a JSON object, collecting errors; `done()` raises them all as one 400."""

    def __init__(self, data: dict[str, Any], *, allowed: Iterable[str] | None = None) -> None:
        self.data = data
        self.errors: dict[str, str] = {}
        if allowed is not None:
            for key in sorted(set(data) - set(allowed)):
                self.errors[str(key)] = "unknown field"

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, message)

    def done(self) -> None:
        if self.errors:
            raise validation_error(self.errors)

    def _get(self, name: str, required: bool, nullable: bool) -> Any:
        if name not in self.data:
            if required:
                self.fail(name, "is required")
            return MISSING
        value = self.data[name]
        if value is None:
            if not nullable:
                self.fail(name, "must not be null")
                return MISSING
        return value

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        nullable: bool = False,
        min_len: int = 1,
        max_len: int | None = None,
        choices: Iterable[str] | None = None,
    ) -> Any:
        value = self._get(name, required, nullable)
        if value is MISSING or value is None:
            return value
        if not isinstance(value, str):
            self.fail(name, "must be a string")
            return MISSING
        if choices is not None:
            options = list(choices)
            if value not in options:
                self.fail(name, "must be one of " + ", ".join(options))
                return MISSING
        if len(value) < min_len or (max_len is not None and len(value) > max_len):
            bound = f"{min_len}-{max_len}" if max_len is not None else f"at least {min_len}"
            self.fail(name, f"must be {bound} characters long")
            return MISSING
        return value

    def integer(
        self,
        name: str,
        *,
        required: bool = False,
        nullable: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
        choices: Iterable[int] | None = None,
    ) -> Any:
        value = self._get(name, required, nullable)
        if value is MISSING or value is None:
            return value
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(name, "must be an integer")
            return MISSING
        if choices is not None:
            options = list(choices)
            if value not in options:
                self.fail(name, "must be one of " + ", ".join(map(str, options)))
                return MISSING
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.fail(name, f"must be between {minimum} and {maximum}")
            return MISSING
        return value

    def number(
        self,
        name: str,
        *,
        required: bool = False,
        nullable: bool = False,
        positive: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> Any:
        value = self._get(name, required, nullable)
        if value is MISSING or value is None:
            return value
        if not _is_number(value) or value != value or value in (float("inf"), float("-inf")):
            self.fail(name, "must be a number")
            return MISSING
        if not _bounded_number(value):
            self.fail(name, _OUT_OF_RANGE)
            return MISSING
        if positive and not value > 0:
            self.fail(name, "must be greater than 0")
            return MISSING
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.fail(name, f"must be between {minimum} and {maximum}")
            return MISSING
        return value

    def boolean(self, name: str, *, required: bool = False) -> Any:
        value = self._get(name, required, False)
        if value is MISSING:
            return value
        if not isinstance(value, bool):
            self.fail(name, "must be true or false")
            return MISSING
        return value

    def timestamp(self, name: str, *, required: bool = False, nullable: bool = False) -> Any:
        value = self._get(name, required, nullable)
        if value is MISSING or value is None:
            return value
        if not isinstance(value, str):
            self.fail(name, "must be an ISO 8601 timestamp string")
            return MISSING
        try:
            parsed: datetime = parse_ocpp(value)
        except ValueError:
            self.fail(name, "must be an ISO 8601 timestamp, e.g. 2026-01-31T12:00:00Z")
            return MISSING
        return parsed

