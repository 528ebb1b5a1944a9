"""OCPP-J frame parsing: one text frame in, one classified frame out (RELIABILITY rows 15-29).

`parse()` answers what can be answered without knowing the action (unreadable JSON,
wrong shape, bad message id, unknown message type, too deep) with a ready `Reply`;
CALLs go on to the connection's queue, where `check_call()` does the action-level
checks (case-sensitive action, direction, payload shape, size, schema) in order.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Union

import orjson

from services.common.ocpp_version import OcppVersion
from services.gateway import sizes, validation
from services.gateway.errors import V16, call_error

__all__ = ["Call", "Result", "Error", "Reply", "Ignore", "Frame", "parse", "check_call", "depth_exceeds", "MAX_ID_LEN"]

MAX_ID_LEN = 36
_ECHO_ID_LEN = 100  # an over-long id is echoed (so the station can correlate) up to here


class Call(NamedTuple):
    message_id: str
    action: str
    payload: Any
    raw: str


class Result(NamedTuple):
    message_id: str
    payload: Any


class Error(NamedTuple):
    message_id: str
    code: str
    description: str
    details: Any


class Reply(NamedTuple):
    """A CALLERROR to send right away."""

    text: str


class Ignore(NamedTuple):
    reason: str


Frame = Union[Call, Result, Error, Reply, Ignore]


def depth_exceeds(obj: Any, limit: int) -> bool:
    """True if `obj` nests more than `limit` containers deep. Iterative: no recursion."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def _id_or_dash(msg: list[Any]) -> str:
    mid = msg[1] if len(msg) > 1 else None
    return mid if isinstance(mid, str) and 0 < len(mid) <= _ECHO_ID_LEN else "-1"


def _shape_error(version: str, message_id: str, why: str) -> Reply:
    code = "ProtocolError" if version == V16 else "RpcFrameworkError"
    return Reply(call_error(version, message_id, code, why))


def parse(version: str, text: str, max_depth: int) -> Frame:
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:  # also orjson's own recursion limit (1024)
        code = "GenericError" if version == V16 else "RpcFrameworkError"
        return Reply(call_error(version, "-1", code, "Frame is not valid JSON"))
    if not isinstance(msg, list) or len(msg) < 3:
        mid = _id_or_dash(msg) if isinstance(msg, list) else "-1"
        return _shape_error(version, mid, "Frame is not an OCPP-J array [type, id, ...]")
    # Cheap pre-check: only walk the structure when there are enough brackets to matter.
    if text.count("{") + text.count("[") > max_depth and depth_exceeds(msg, max_depth):
        return Reply(call_error(version, _id_or_dash(msg), "FormatViolation", f"JSON nested deeper than {max_depth}"))
    kind = msg[0]
    if type(kind) is not int:
        return _shape_error(version, _id_or_dash(msg), "MessageTypeId must be an integer")
    mid = msg[1]
    if kind == 2:
        if type(mid) is not str or not 0 < len(mid) <= MAX_ID_LEN:
            code = "TypeConstraintViolation" if version == V16 else "RpcFrameworkError"
            return Reply(call_error(version, _id_or_dash(msg), code, "MessageId must be a string of at most 36 characters"))
        if len(msg) != 4 or type(msg[2]) is not str:
            return _shape_error(version, mid, "CALL must be [2, id, action, payload]")
        return Call(mid, msg[2], msg[3], text)
    if kind == 3:
        if type(mid) is not str:
            return Ignore("CALLRESULT without a string id")
        return Result(mid, msg[2])
    if kind == 4 or (kind == 5 and version == OcppVersion.V21):  # 2.1 CALLRESULTERROR answers our CALL too
        if type(mid) is not str:
            return Ignore("CALLERROR without a string id")
        code = msg[2] if isinstance(msg[2], str) else "GenericError"
        desc = msg[3] if len(msg) > 3 and isinstance(msg[3], str) else ""
        return Error(mid, code, desc, msg[4] if len(msg) > 4 else {})
    if kind == 6 and version == OcppVersion.V21:
        return Ignore("SEND (unconfirmed message) not handled")
    if version == OcppVersion.V201:
        return Reply(call_error(version, _id_or_dash(msg), "MessageTypeNotSupported", f"MessageTypeId {kind} is not supported"))
    return Ignore(f"unknown MessageTypeId {kind}")  # 1.6 and 2.1: ignore


def check_call(
    version: str,
    call: Call,
    station_side: bool,
    csms_side: bool,
    *,
    max_bytes: int | None = None,
    lenient: list[validation.Lenient] | None = None,
) -> str | None:
    """Action-level checks of a CALL. None if it may be dispatched, else a CALLERROR text.

    `station_side`: we have a handler for the action; `csms_side`: the action exists in
    this version only in the CSMS -> station direction; `max_bytes`: the action frame
    limit (`sizes.frame_limit`). Transaction messages are validated leniently
    (`validation.check`): their payload may be canonicalised in place, and the fields
    accepted leniently are appended to `lenient` when given."""
    action, payload = call.action, call.payload
    if not station_side:
        if csms_side or action in validation.request_actions(version):
            return call_error(version, call.message_id, "NotSupported", f"{action} is not supported by the CSMS")
        return call_error(version, call.message_id, "NotImplemented", f"Unknown action {action[:64]!r}")
    if not isinstance(payload, dict):
        return call_error(version, call.message_id, "FormatViolation", "Payload must be a JSON object")
    # A code point is at most 4 UTF-8 bytes: most frames need no measuring at all.
    if max_bytes is not None and len(call.raw) * 4 > max_bytes:
        too_big = sizes.oversize(action, call.raw, payload, max_bytes)
        if too_big is not None:
            return call_error(version, call.message_id, "FormatViolation", too_big)
    violation = validation.validate(version, action, payload)
    if violation is not None:  # the lenient pass runs only here: valid frames pay nothing for it
        violation, notes = validation.relax(version, action, payload, violation)
        if violation is not None:
            return call_error(version, call.message_id, violation[0], violation[1])
        if notes and lenient is not None:
            lenient.extend(notes)
    return None
