"""Money: a `Decimal` amount in an ISO 4217 currency. Never float.

Arithmetic keeps full precision; `rounded()` is the only place an amount is
rounded to the currency's minor unit (ROUND_HALF_UP). Pricing rounds once, at
the very end (see docs/adr/005-billing-model.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal

__all__ = [
    "Money",
    "CurrencyError",
    "CurrencyMismatchError",
    "PRICING_CONTEXT",
    "minor_units",
    "quantum",
    "round_amount",
    "validate_currency",
]

# Precision used for every pricing computation, independent of whatever the
# caller did to the thread's decimal context. 50 digits leaves ~30 fractional
# digits for realistic amounts, so unrounded intermediate values are exact for
# all practical purposes.
PRICING_CONTEXT = Context(prec=50)

_MINOR_UNITS: dict[str, int] = {
    "EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2, "PLN": 2,
    "JPY": 0, "KRW": 0,
    "KWD": 3, "BHD": 3,
}
_DEFAULT_MINOR_UNITS = 2
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


class CurrencyError(ValueError):
    """A currency code that is not three uppercase letters."""


class CurrencyMismatchError(ValueError):
    """Arithmetic between amounts in different currencies."""


def validate_currency(code: object) -> str:
    if not isinstance(code, str) or not _CURRENCY_RE.match(code):
        raise CurrencyError(f"currency must be a 3-letter uppercase ISO 4217 code, got {code!r}")
    return code


def minor_units(currency: str) -> int:
    """Digits after the decimal point for `currency` (ISO 4217; default 2)."""
    return _MINOR_UNITS.get(currency, _DEFAULT_MINOR_UNITS)


def quantum(currency: str) -> Decimal:
    """The smallest unit of `currency`: 0.01 for EUR, 1 for JPY, 0.001 for KWD."""
    return Decimal(1).scaleb(-minor_units(currency))


def round_amount(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit, half away from zero."""
    q = amount.quantize(quantum(currency), rounding=ROUND_HALF_UP, context=PRICING_CONTEXT)
    return q.copy_abs() if q.is_zero() else q  # no "-0.00"


def _as_decimal(value: object, what: str) -> Decimal:
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{what} must be a Decimal (or int), not {type(value).__name__}")
    if isinstance(value, int):
        return Decimal(value)
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{what} must be finite, got {value}")
    return value


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount", _as_decimal(self.amount, "amount"))
        validate_currency(self.currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    def _same_currency(self, other: object) -> Money:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatchError(f"{self.currency} vs {other.currency}")
        return other

    def __add__(self, other: Money) -> Money:
        o = self._same_currency(other)
        return Money(PRICING_CONTEXT.add(self.amount, o.amount), self.currency)

    def __sub__(self, other: Money) -> Money:
        o = self._same_currency(other)
        return Money(PRICING_CONTEXT.subtract(self.amount, o.amount), self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        f = _as_decimal(factor, "factor")
        return Money(PRICING_CONTEXT.multiply(self.amount, f), self.currency)

    __rmul__ = __mul__

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def rounded(self) -> Money:
        """This amount rounded to the minor unit (ROUND_HALF_UP)."""
        return Money(round_amount(self.amount, self.currency), self.currency)

    def display(self) -> str:
        """Rounded amount as a fixed-point string: "2.35", "100" (JPY), "1.250" (KWD)."""
        return f"{round_amount(self.amount, self.currency):f}"

    def to_dict(self) -> dict[str, str]:
        return {"amount": self.display(), "currency": self.currency}

    def __str__(self) -> str:
        return f"{self.display()} {self.currency}"
