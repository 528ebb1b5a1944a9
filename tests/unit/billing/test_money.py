from __future__ import annotations

from decimal import Decimal

import pytest

from services.billing.domain.money import CurrencyError, CurrencyMismatchError, Money, minor_units


def eur(amount: str) -> Money:
    return Money(Decimal(amount), "EUR")


@pytest.mark.parametrize(
    ("currency", "digits"),
    [("EUR", 2), ("USD", 2), ("GBP", 2), ("CHF", 2), ("SEK", 2), ("NOK", 2), ("DKK", 2), ("PLN", 2),
     ("JPY", 0), ("KRW", 0), ("KWD", 3), ("BHD", 3), ("XYZ", 2)],
)
def test_minor_units_follow_iso_4217_and_default_to_two(currency: str, digits: int) -> None:
    assert minor_units(currency) == digits


def test_rounding_is_half_up_not_bankers() -> None:
    assert eur("0.125").rounded() == eur("0.13")
    assert eur("0.135").rounded() == eur("0.14")
    assert eur("2.345").display() == "2.35"


def test_yen_rounds_to_whole_units_and_dinar_to_three_decimals() -> None:
    assert Money(Decimal("370.5"), "JPY").display() == "371"
    assert Money(Decimal("1.2345"), "KWD").display() == "1.235"


def test_arithmetic_keeps_full_precision_until_rounded() -> None:
    third = Money(Decimal(1), "EUR") * (Decimal(1) / Decimal(3))
    assert (third + third + third).rounded() == eur("1.00")
    assert (eur("1.00") - eur("0.004")).amount == Decimal("0.996")


def test_display_never_shows_negative_zero() -> None:
    assert eur("-0.001").display() == "0.00"


def test_amounts_in_different_currencies_cannot_be_added() -> None:
    with pytest.raises(CurrencyMismatchError):
        _ = eur("1") + Money(Decimal(1), "USD")


def test_floats_are_rejected_as_amounts_and_factors() -> None:
    with pytest.raises(TypeError):
        Money(0.1, "EUR")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _ = eur("1") * 1.19  # type: ignore[operator]


def test_currency_must_be_three_uppercase_letters() -> None:
    for bad in ("eur", "EURO", "E1R", ""):
        with pytest.raises(CurrencyError):
            Money(Decimal(1), bad)


def test_money_serialises_as_a_rounded_decimal_string() -> None:
    assert eur("2.345").to_dict() == {"amount": "2.35", "currency": "EUR"}
