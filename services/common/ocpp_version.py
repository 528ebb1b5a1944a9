"""The OCPP versions the CSMS speaks, as one enum instead of bare strings.

`OcppVersion` is a `StrEnum`: its members compare equal to the strings carried in
events (`Envelope.ocpp_version`), so records written before the enum existed read the
same. The WebSocket subprotocol of each version is `subprotocol`.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["OcppVersion", "version_of_subprotocol"]


class OcppVersion(StrEnum):
    V16 = "1.6"
    V201 = "2.0.1"
    V21 = "2.1"

    @property
    def subprotocol(self) -> str:
        return f"ocpp{self.value}"

    @property
    def is_16(self) -> bool:
        return self is OcppVersion.V16


_BY_SUBPROTOCOL = {v.subprotocol: v for v in OcppVersion}


def version_of_subprotocol(subprotocol: str) -> OcppVersion | None:
    """`ocpp1.6` -> V16; None for a subprotocol the CSMS does not speak."""
    return _BY_SUBPROTOCOL.get(subprotocol)
