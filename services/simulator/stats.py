"""Latency and throughput bookkeeping for the simulator."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["Stats", "percentile"]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


@dataclass
class Stats:
    started: float = field(default_factory=time.perf_counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    boots: list[float] = field(default_factory=list)  # connect -> Accepted boot, seconds
    stations_done: int = 0
    stations_failed: int = 0
    calls_received: Counter[str] = field(default_factory=Counter)

    def record(self, action: str, seconds: float) -> None:
        self.latencies.setdefault(action, []).append(seconds)

    def summary(self) -> dict[str, object]:
        elapsed = time.perf_counter() - self.started
        every = sorted(v for vs in self.latencies.values() for v in vs)
        boots = sorted(self.boots)
        return {
            "stations_ok": self.stations_done,
            "stations_failed": self.stations_failed,
            "messages": len(every),
            "elapsed_s": round(elapsed, 3),
            "messages_per_s": round(len(every) / elapsed, 1) if elapsed else 0.0,
            "reply_latency_ms": {
                "p50": round(percentile(every, 0.50) * 1000, 3),
                "p99": round(percentile(every, 0.99) * 1000, 3),
                "max": round((every[-1] if every else 0.0) * 1000, 3),
            },
            "boot_latency_ms": {
                "p50": round(percentile(boots, 0.50) * 1000, 3),
                "p99": round(percentile(boots, 0.99) * 1000, 3),
            },
            "by_action": {
                a: {"n": len(v), "p50_ms": round(percentile(sorted(v), 0.5) * 1000, 3)}
                for a, v in sorted(self.latencies.items())
            },
            "errors": dict(self.errors),
            "calls_from_csms": dict(self.calls_received),
        }
