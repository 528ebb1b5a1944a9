"""A fold of the `stations-drivers` stage (see the package docstring): the event types it
wants, what it does with them, and its periodic jobs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from services.common import events as ev
from services.common.processor import Periodic

__all__ = ["CE_TYPE_PREFIX", "Fold", "ce_type"]

CE_TYPE_PREFIX = "csms.events.v1."


def ce_type(body: type[ev.Body] | str) -> str:
    """The ce_type header of an event body (`ce_type(ev.CommandResult)`)."""
    return CE_TYPE_PREFIX + (body if isinstance(body, str) else body.__name__)


@dataclass(frozen=True)
class Fold:
    """One feature of the stage: the event types it wants (ce_type headers), what it does
    with a batch's events of those types (in record order), and its periodic jobs."""

    name: str
    ce_types: frozenset[str]
    apply: Callable[[Sequence[ev.Envelope]], Awaitable[None]]
    periodic: tuple[Periodic, ...] = field(default=())
