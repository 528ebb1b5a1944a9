"""CALLERROR frames with the negotiated version's spelling (RELIABILITY "Version-specific answers").

Code in the gateway names errors with the 2.x spelling (`FormatViolation`,
`OccurrenceConstraintViolation`, ...); `spell(version, code)` turns it into what the
station's version defines. 1.6 keeps the errata'd names `FormationViolation` and
`OccurenceConstraintViolation` and has no `RpcFrameworkError`/`MessageTypeNotSupported`.
"""

from __future__ import annotations

from typing import Any

import orjson
from ocpp.exceptions import OCPPError

from services.common.ocpp_version import OcppVersion
from services.gateway import metrics

__all__ = ["spell", "call_error", "from_exception", "V16", "MAX_DESCRIPTION"]

V16 = OcppVersion.V16
MAX_DESCRIPTION = 255  # 2.x errorDescription is string[0..255]

_TO_16 = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
    "RpcFrameworkError": "GenericError",
    "MessageTypeNotSupported": "NotSupported",
}
_TO_2X = {
    "FormationViolation": "FormatViolation",
    "OccurenceConstraintViolation": "OccurrenceConstraintViolation",
}
_KNOWN_16 = frozenset({
    "NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
    "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
    "TypeConstraintViolation", "GenericError",
})
_KNOWN_2X = frozenset({
    "FormatViolation", "GenericError", "InternalError", "MessageTypeNotSupported", "NotImplemented",
    "NotSupported", "OccurrenceConstraintViolation", "PropertyConstraintViolation", "ProtocolError",
    "RpcFrameworkError", "SecurityError", "TypeConstraintViolation",
})


def spell(version: str, code: str) -> str:
    """The error code as `version` spells it; unknown codes become GenericError."""
    if version == V16:
        code = _TO_16.get(code, code)
        return code if code in _KNOWN_16 else "GenericError"
    code = _TO_2X.get(code, code)
    return code if code in _KNOWN_2X else "GenericError"


def _default(obj: Any) -> Any:
    return str(obj)


def call_error(
    version: str,
    message_id: str,
    code: str,
    description: str = "",
    details: dict[str, Any] | None = None,
) -> str:
    """`[4, id, code, description, details]` as text; counts csms_gateway_callerrors_total."""
    spelled = spell(version, code)
    metrics.callerror(spelled)
    frame = [4, message_id, spelled, description[:MAX_DESCRIPTION], details or {}]
    try:
        return orjson.dumps(frame, default=_default).decode()
    except TypeError:  # details that orjson cannot serialise at all
        frame[4] = {}
        return orjson.dumps(frame).decode()


def from_exception(version: str, message_id: str, exc: OCPPError) -> str:
    """A handler's ocpp.exceptions.OCPPError as a CALLERROR of the station's version."""
    details = exc.details if isinstance(exc.details, dict) else {}
    details = {k: v for k, v in details.items() if k != "ocpp_message"}
    return call_error(version, message_id, getattr(exc, "code", "InternalError"), str(exc.description or ""), details)
