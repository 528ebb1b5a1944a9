"""Pure billing domain: money, tariffs, pricing, CDRs. Standard library only."""

from .cdr import (
    Cdr,
    InputDigests,
    PreviousCdr,
    cdr_id,
    cdr_to_dict,
    cdr_to_ocpi,
    decide_cdr,
    input_digests,
    tariff_to_ocpi,
)
from .money import CurrencyError, CurrencyMismatchError, Money, minor_units, quantum, round_amount
from .pricing import BandLine, EnergySample, PriceBreakdown, SessionUsage, breakdown_to_dict, price_session
from .tariff import Tariff, TariffBand, TariffError, band_segments, tariff_from_dict, tariff_to_dict

__all__ = [
    "BandLine",
    "Cdr",
    "CurrencyError",
    "CurrencyMismatchError",
    "EnergySample",
    "InputDigests",
    "Money",
    "PreviousCdr",
    "PriceBreakdown",
    "SessionUsage",
    "Tariff",
    "TariffBand",
    "TariffError",
    "band_segments",
    "breakdown_to_dict",
    "cdr_id",
    "cdr_to_dict",
    "cdr_to_ocpi",
    "decide_cdr",
    "input_digests",
    "minor_units",
    "price_session",
    "quantum",
    "round_amount",
    "tariff_from_dict",
    "tariff_to_dict",
    "tariff_to_ocpi",
]
