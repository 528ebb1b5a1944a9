"""Bounded decimal parsing for everything a station or an operator sends (money, energy).

`Decimal("1e-999999")` is a valid number whose arithmetic expands it to a million
digits, and `Decimal("1e308")` overflows every quantize. Values we accept must be
finite and within `MAX_ABS_EXPONENT` of 1 in both directions (far beyond any meter
register, price or amount, small enough that quantize and exact arithmetic stay
cheap). Anything else is "not a usable number": `parse_decimal` returns None and the
caller keeps the raw text, flags it, or refuses it, as its contract says.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["API_MAX_EXPONENT", "MAX_ABS_EXPONENT", "api_bounded", "parse_decimal", "bounded"]

# |adjusted exponent| <= 15: 1e15 Wh is a terawatt-hour register; 1e-15 is far below any
# currency's minor unit. Digits beyond that carry no meaning and only cost CPU.
MAX_ABS_EXPONENT = 15
_MAX_TEXT = 64  # a longer numeric string is not a meter reading or a price


# What an operator may send through the API (docs/security.md): |value| < 10^12 and at most
# 12 decimal places once trailing zeros are dropped ("1.500" is 1.5). Tighter than what
# stations send (MAX_ABS_EXPONENT): an API number is a price, a current, a period, never a
# meter register, and its exact arithmetic stays cheap.
API_MAX_EXPONENT = 12


def api_bounded(number: Decimal) -> bool:
    """True if `number` is finite, |number| < 10^12, and its normalised exponent is at
    least -12 (zero in any spelling, "0E-999999" too, is fine)."""
    if not number.is_finite():
        return False
    if number.is_zero():
        return True
    if number.adjusted() >= API_MAX_EXPONENT:
        return False
    if number.adjusted() < -API_MAX_EXPONENT:
        return False
    _, digits, exponent = number.as_tuple()
    if not isinstance(exponent, int):
        return False
    # normalised exponent, exactly (Decimal.normalize would round to the context's precision)
    trailing = len(digits) - len(bytes(digits).rstrip(b"\x00")) if exponent < -API_MAX_EXPONENT else 0
    return exponent + trailing >= -API_MAX_EXPONENT


def bounded(number: Decimal) -> bool:
    """True if `number` is finite and zero or of magnitude 10^-15 .. 10^15 (inclusive)."""
    if not number.is_finite():
        return False
    if number.is_zero():
        return True
    return -MAX_ABS_EXPONENT <= number.adjusted() <= MAX_ABS_EXPONENT


def parse_decimal(value: Any) -> Decimal | None:
    """A bounded, finite Decimal from a JSON number or numeric string, else None.

    bool is not a number here; floats go through their shortest repr (0.1 stays 0.1)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        if abs(value) >= 10 ** (MAX_ABS_EXPONENT + 1):
            return None
        return Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > _MAX_TEXT:
            return None
        try:
            number = Decimal(text)
        except (InvalidOperation, ValueError):
            return None
    else:
        return None
    return number if bounded(number) else None
