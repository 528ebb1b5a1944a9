"""CSMS_GATEWAY_WORKERS: worker ids, their command partitions, and the supervisor."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from services.common.config import Settings, gateway_ordinal, load_settings
from services.common.errors import ConfigError
from services.gateway.workers import supervise, worker_id


def test_a_single_gateway_keeps_its_ordinal() -> None:
    assert gateway_ordinal("gateway-0") == 0
    assert gateway_ordinal("gateway-7", workers=4) == 7


def test_worker_k_of_pod_n_owns_partition_n_times_workers_plus_k() -> None:
    ids = [worker_id(f"gateway-{n}", k) for n in range(3) for k in range(2)]
    assert ids[:2] == ["gateway-0-w0", "gateway-0-w1"]
    # every worker of every pod its own partition, densely: pods x workers partitions suffice
    assert [gateway_ordinal(i, workers=2) for i in ids] == [0, 1, 2, 3, 4, 5]


def test_the_worker_count_comes_from_the_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSMS_GATEWAY_WORKERS", "3")
    assert gateway_ordinal("gateway-2-w1") == 7
    assert load_settings().gateway_workers == 3


def test_a_worker_beyond_the_configured_count_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CSMS_GATEWAY_WORKERS", raising=False)
    with pytest.raises(ConfigError, match="CSMS_GATEWAY_WORKERS"):
        gateway_ordinal("gateway-1-w1")  # one worker configured: w1 cannot exist
    assert load_settings({}).gateway_workers == 1


def test_one_worker_runs_in_this_process_under_its_own_id() -> None:
    seen: list[tuple[str, int, int]] = []

    def serve(s: Settings, k: int) -> int:
        seen.append((s.gateway_id, k, os.getpid()))
        return 0

    assert supervise(Settings(gateway_id="gateway-4"), serve) == 0
    assert seen == [("gateway-4", 0, os.getpid())]


def test_workers_are_processes_with_their_own_ids_and_a_clean_stop_exits_0(tmp_path: Path) -> None:
    def serve(s: Settings, k: int) -> int:
        (tmp_path / f"w{k}").write_text(f"{s.gateway_id} {os.getpid()}")
        if k == 0:  # the first worker ends cleanly: the supervisor stops the others
            return 0
        time.sleep(30)
        return 3

    t0 = time.monotonic()
    assert supervise(Settings(gateway_id="gateway-2", gateway_workers=2), serve) == 0
    assert time.monotonic() - t0 < 20  # the sleeping worker was stopped, not waited for
    ids = {p.name: p.read_text().split() for p in tmp_path.iterdir()}
    assert {ids["w0"][0], ids["w1"][0]} == {"gateway-2-w0", "gateway-2-w1"}
    assert len({ids["w0"][1], ids["w1"][1], str(os.getpid())}) == 3


def test_a_failing_worker_stops_the_pod_with_its_exit_code(tmp_path: Path) -> None:
    def serve(s: Settings, k: int) -> int:
        if k == 1:
            raise RuntimeError("worker crashed")
        signal.pause()  # until the supervisor's SIGTERM
        return 0

    assert supervise(Settings(gateway_id="gateway-0", gateway_workers=2), serve) == 1
