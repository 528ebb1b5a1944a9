"""JSON encoding of the values the CSMS writes into OCPP frames.

orjson encodes dicts, lists and scalars natively; a payload may also carry a `Decimal`
(an amount, a limit) or a `datetime` (an instant), which on the wire are a JSON number
and an OCPP timestamp (UTC, `Z`, milliseconds: `timeutil.to_ocpp`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from services.common.timeutil import to_ocpp

__all__ = ["json_default"]


def json_default(obj: object) -> object:
    """orjson `default`: Decimal as a number, datetimes as OCPP timestamps."""
    if isinstance(obj, Decimal):
        return float(obj)
    if isinstance(obj, datetime):
        return to_ocpp(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
