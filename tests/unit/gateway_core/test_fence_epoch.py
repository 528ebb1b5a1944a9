"""How the gateway's command reader tells a fence from a command (services/gateway/commands.py):
the typed `Command.fence_epoch`, or, from a gateway that predates it (a rolling upgrade),
command type "_Fence" with the epoch in its params."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from services.common import codec
from services.common.routing import FENCE
from services.gateway.commands import fence_epoch

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
CMD = codec.Command(
    command_id="c1", station_id="CP1", command_type="Reset", params_json='{"reset_type":"Soft"}',
    issued_at=T0, expires_at=T0 + timedelta(seconds=60), target_gateway_id="gateway-0", target_epoch=3,
)


def through_the_wire(cmd: codec.Command) -> codec.Command:
    return codec.decode_command(codec.encode_command(cmd))


def test_a_command_is_not_a_fence() -> None:
    assert fence_epoch(through_the_wire(CMD)) is None


def test_a_typed_fence_is_read_from_its_field_whatever_its_params_say() -> None:
    fence = replace(CMD, command_type=FENCE, params_json='{"epoch": 1}', fence_epoch=9)
    assert fence_epoch(through_the_wire(fence)) == 9


def test_a_fence_of_an_older_gateway_is_read_from_its_params() -> None:
    assert fence_epoch(through_the_wire(replace(CMD, command_type=FENCE, params_json='{"epoch": 7}'))) == 7


def test_an_older_fence_without_a_readable_epoch_falls_back_to_the_target_epoch() -> None:
    for params in ("{}", "[]", "not json", '{"epoch": "x"}'):
        assert fence_epoch(replace(CMD, command_type=FENCE, params_json=params)) == 3
