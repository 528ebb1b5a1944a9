"""Request parsing and field validation: every problem is reported at once, per field.

No input gives a 500 (docs/security.md, errors). `read_json` refuses, with a 400 naming
the field (`a.b[2].c`):
- a body that is not a JSON object, not UTF-8, or nested deeper than MAX_DEPTH (json's
  RecursionError included);
- a non-integer number outside the API bound (`services.common.decimals.api_bounded`:
  |value| < 10^12, at most 12 decimals: "1e-999999" and "1e400" never become a megabyte
  document or an overflowing quantize), NaN and Infinity, an integer of more than
  MAX_INT_DIGITS digits;
- a string holding a lone surrogate (it cannot be stored as UTF-8).
Field readers bound the rest: numbers (`Validator.number`, the same bound), timestamps
(1970 to 9999, `bounded_time`), ids (matched in full: a trailing newline is refused).
Money is validated by the billing codec (`tariff_from_dict`) for decimal strings.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable

from aiohttp import web

from services.api.errors import bad_request, validation_error
from services.common.decimals import API_MAX_EXPONENT, api_bounded
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
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_LIMIT",
    "bounded_time",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# The gateway's rule for an OCPP identity (it appears in the URL path /ocpp/{id}).
STATION_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,48}")  # always fullmatch: "$" would let "CP-1\n" through
MAX_DEPTH = 32        # JSON nesting of a request body (the deepest API body nests 5)
_API_INT_LIMIT = int(10**API_MAX_EXPONENT)
MAX_INT_DIGITS = 20   # an integer of more digits is beyond 64 bits: no field takes one
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MIN_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MAX_TIME = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class _Refused:
    """A number `read_json` refuses, kept in place until the walk names its field."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


_OUT_OF_RANGE = (f"must be a finite number of magnitude below 1e{API_MAX_EXPONENT} "
                 f"with at most {API_MAX_EXPONENT} decimal places")
_NOT_FINITE = "must be a finite number (NaN and Infinity are not JSON numbers)"


def _constant(text: str) -> _Refused:
    return _Refused(_NOT_FINITE)


def _integer(text: str) -> int | _Refused:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        return _Refused(f"must be an integer of at most {MAX_INT_DIGITS} digits")
    return int(text)


def _bounded_float(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if not api_bounded(Decimal(text)):
            return _Refused(_OUT_OF_RANGE)
        return convert(text)

    return parse


def _field(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _refusals(data: Any) -> dict[str, str]:
    """Walks the parsed body (iteratively: no recursion to exhaust) for refused numbers,
    lone surrogates and nesting beyond MAX_DEPTH: top-level field -> problem (a nested
    one's message starts with its path, `bands[0].price_per_kwh must be ...`)."""
    errors: dict[str, str] = {}

    def refuse(path: str, why: str) -> None:
        top = re.split(r"[.\[]", path, maxsplit=1)[0] if path else "body"
        errors.setdefault(top or "body", why if path in ("", top) else f"{path} {why}")

    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, _Refused):
            refuse(path, value.why)
        elif isinstance(value, str):
            if _surrogate(value):
                refuse(path, "must be valid Unicode (a lone surrogate is not)")
        elif isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                refuse(path, f"is nested deeper than {MAX_DEPTH} levels")
                continue
            if isinstance(value, dict):
                for key, item in value.items():
                    if _surrogate(key):
                        refuse(path, "has a key that is not valid Unicode")
                        continue
                    stack.append((item, _field(path, key), depth + 1))
            else:
                stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
    return errors


async def read_json(request: web.Request, *, parse_float: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """The request body as a JSON object; 400 for anything else, naming the fields whose
    values are refused (see the module docstring). `parse_float` reads the numbers that
    are within the bound (default float; Decimal for money)."""
    raw = await request.read()
    if not raw:
        raise bad_request("request body must be a JSON object")
    try:
        data = json.loads(
            raw, parse_float=_bounded_float(parse_float or float), parse_int=_integer, parse_constant=_constant,
        )
    except RecursionError:
        raise bad_request(f"request body is nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError, ArithmeticError) as exc:
        raise bad_request(f"request body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise bad_request("request body must be a JSON object")
    errors = _refusals(data)
    if errors:
        raise validation_error(errors)
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
    if not STATION_ID_RE.fullmatch(value):
        return "must be 1-48 characters of A-Z a-z 0-9 . _ -"
    if ".." in value or value == ".":
        return "must not be '.' or contain '..'"
    return None


_RESOURCE_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # fullmatch


def check_resource_id(value: object) -> str | None:
    """Ids of tariffs and sites (they appear in URL paths): None if acceptable, else why not."""
    if not isinstance(value, str):
        return "must be a string"
    if not _RESOURCE_ID_RE.fullmatch(value) or ".." in value:
        return "must be 1-64 characters of A-Z a-z 0-9 . _ : - (no '..')"
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _bounded_number(value: object) -> bool:
    """A finite number within the API bound (`services.common.decimals.api_bounded`; a
    float by its shortest repr, so 0.1 is 0.1)."""
    if isinstance(value, Decimal):
        return api_bounded(value)
    if isinstance(value, float):
        return math.isfinite(value) and api_bounded(Decimal(repr(value)))
    if isinstance(value, int):
        return abs(value) < _API_INT_LIMIT
    return False


def bounded_time(value: datetime) -> bool:
    """An instant the API accepts: 1970-01-01 to 9999-12-31 UTC."""
    return _MIN_TIME <= value <= _MAX_TIME


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
        printable: bool = False,
    ) -> Any:
        """With `printable`, control characters (a newline too) are refused: for ids that
        end up in URLs, headers and log lines."""
        value = self._get(name, required, nullable)
        if value is MISSING or value is None:
            return value
        if not isinstance(value, str):
            self.fail(name, "must be a string")
            return MISSING
        if printable and _CONTROL.search(value):
            self.fail(name, "must not contain control characters")
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
            if len(value) > 64:
                raise ValueError("too long for a timestamp")
            parsed: datetime = parse_ocpp(value)
        except ValueError:
            self.fail(name, "must be an ISO 8601 timestamp, e.g. 2026-01-31T12:00:00Z")
            return MISSING
        if not bounded_time(parsed):
            self.fail(name, "must be between 1970-01-01 and 9999-12-31 (UTC)")
            return MISSING
        return parsed

