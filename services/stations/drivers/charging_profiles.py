"""Stub: filled in by the charging profiles work (ADR 018)."""

from __future__ import annotations

from collections.abc import Sequence

from services.common import events as ev
from services.common.runtime import Runtime
from services.stations.drivers import Fold

__all__ = ["build"]


async def _nothing(envs: Sequence[ev.Envelope]) -> None:
    return None


def build(rt: Runtime) -> Fold:
    return Fold("charging_profiles", frozenset(), _nothing)
