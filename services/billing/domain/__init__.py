"""Pure billing domain: money, tariffs, pricing (and its running accumulator, ADR 015), CDRs.

Standard library and the pure shared modules only (`services.common.decimals`,
`services.common.timeutil`). Storage and wire shapes are not here: the CDR document and
REST shape are `services.billing.documents`, the OCPI objects `services.billing.codec`.
Module order, no cycles: money -> tariff -> values -> running -> pricing -> cdr."""

from .cdr import (
    REASON_HOLD_RELEASED,
    Cdr,
    InputDigests,
    PreviousCdr,
    cdr_id,
    decide_cdr,
    input_digests,
)
from .holds import (
    HOLD_CLOCK_SUSPECT,
    HOLD_DURATION,
    HOLD_ENERGY,
    HOLD_SESSION,
    cdr_hold_reasons,
    is_billable_status,
    refusal,
)
from .money import CurrencyError, CurrencyMismatchError, Money, minor_units, quantum, round_amount
from .pricing import price_session
from .running import (
    PriceAccumulator,
    RunningUsage,
    StaleAccumulator,
    accumulator_matches,
    advance_price,
    finish_price,
    fold_price,
    open_price,
    tariff_fingerprint,
)
from .tariff import Tariff, TariffBand, TariffError, band_segments
from .values import MAX_PRICED_DURATION, BandLine, EnergySample, PriceBreakdown, SessionUsage

__all__ = [
    "HOLD_CLOCK_SUSPECT",
    "HOLD_DURATION",
    "HOLD_ENERGY",
    "HOLD_SESSION",
    "MAX_PRICED_DURATION",
    "REASON_HOLD_RELEASED",
    "BandLine",
    "Cdr",
    "CurrencyError",
    "CurrencyMismatchError",
    "EnergySample",
    "InputDigests",
    "Money",
    "PreviousCdr",
    "PriceAccumulator",
    "PriceBreakdown",
    "RunningUsage",
    "StaleAccumulator",
    "SessionUsage",
    "Tariff",
    "TariffBand",
    "TariffError",
    "accumulator_matches",
    "advance_price",
    "band_segments",
    "cdr_hold_reasons",
    "cdr_id",
    "decide_cdr",
    "finish_price",
    "fold_price",
    "open_price",
    "input_digests",
    "is_billable_status",
    "minor_units",
    "price_session",
    "quantum",
    "refusal",
    "round_amount",
    "tariff_fingerprint",
]
