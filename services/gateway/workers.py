"""SO_REUSEPORT gateway workers: `CSMS_GATEWAY_WORKERS` processes per pod on one OCPP port.

One Python process serves OCPP on one core (bench/RESULTS.md, "Gateway alone on Kafka").
With `CSMS_GATEWAY_WORKERS=W` (default 1) the `csms gateway` process of pod `gateway-N`
forks W workers before any event loop exists; each binds the same port with SO_REUSEPORT
(the kernel spreads new connections over them) and is a gateway of its own:

- gateway id `gateway-N-pP` with P = N * W + k for worker k = 0..W-1: the id carries the
  worker's command partition, so `gateway_ordinal(owner id)` (ADR 001) gives it to the
  API and smart charging from the ownership record alone: no role but the gateway needs
  to know W. Pods x workers partitions of csms.commands.v1 suffice (dense); a worker whose
  partition does not exist refuses to start;
- its own ownership claims and epochs in the store, its own
  `StationConnected`/`StationDisconnected`, its own fencing (ADR 001: a station that
  reconnects to another worker of the same pod is fenced exactly as if it had moved to
  another pod).

With W = 1 nothing is forked and the id stays `gateway-N` (partition N). Changing W moves
a pod's partitions; while a rolling update runs pods with the old and the new W side by
side, two gateways can read one partition for that while: each executes only the
commands addressed to it (services/gateway/commands.py).

The parent only supervises: SIGTERM/SIGINT are passed on to the workers (each drains its
sockets as a single gateway does: over CSMS_DRAIN_WINDOW_S, each worker with its own
jitter, all at the same time, so a pod drains in one window); when one worker exits, the others are stopped and the
parent exits with that worker's code, so the orchestrator restarts the pod as a whole
(a pod never runs with fewer workers than configured). Workers die with the parent
(PR_SET_PDEATHSIG). /healthz and /readyz on the OCPP port, and /metrics on CSMS_METRICS_PORT
(bound with SO_REUSEPORT like the OCPP port), answer for the worker the connection lands on:
with several workers a scrape sees one worker's counters, as before issue 11.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
from typing import Callable

from services.common.config import Settings, gateway_ordinal

__all__ = ["worker_id", "supervise"]

log = logging.getLogger("csms.gateway.workers")

_STOP_GRACE_S = 30.0


def worker_id(gateway_id: str, k: int, workers: int) -> str:
    """Worker k of `workers` in pod `gateway_id` (`gateway-N`): `gateway-N-p<N*workers+k>`."""
    if not 0 <= k < workers:
        raise ValueError(f"worker {k} of {workers}")
    return f"{gateway_id}-p{gateway_ordinal(gateway_id) * workers + k}"


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the supervisor still stops its workers
        pass


def supervise(settings: Settings, serve: Callable[[Settings, int], int]) -> int:
    """Run `serve(worker settings, k)` in `settings.gateway_workers` forked processes and
    wait; returns the exit code of the first worker that ended (0 on a clean stop).
    With one worker, `serve(settings, 0)` runs in this process, gateway id unchanged."""
    n = settings.gateway_workers
    if n <= 1:
        return serve(settings, 0)
    ids = [worker_id(settings.gateway_id, k, n) for k in range(n)]  # ConfigError before forking
    sys.stdout.flush()
    sys.stderr.flush()
    children: dict[int, int] = {}
    for k in range(n):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                _die_with_parent()
                code = serve(settings.with_overrides(gateway_id=ids[k]), k) or 0
            except KeyboardInterrupt:
                code = 0
            except BaseException:
                log.exception("gateway worker %d failed", k)
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = k
    log.info("gateway %s: %d SO_REUSEPORT workers %s (pids %s)", settings.gateway_id, n, " ".join(ids), " ".join(map(str, children)))
    stopping = [False]

    def forward(signum: int, _frame: object) -> None:
        stopping[0] = True
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _wait(children, stopping, forward)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(children: dict[int, int], stopping: list[bool], forward: Callable[[int, object], None]) -> int:
    first: int | None = None
    deadline: float | None = None
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if deadline is not None and time.monotonic() > deadline:
                for p in children:  # a worker that does not stop within the grace period
                    os.kill(p, signal.SIGKILL)
                deadline = None
            time.sleep(0.1)
            continue
        k = children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if first is None:
            first = code if code >= 0 else 128 - code
            if not stopping[0]:
                log.error("gateway worker %d (pid %d) exited with %s; stopping the others", k, pid, code)
                forward(signal.SIGTERM, None)
            deadline = time.monotonic() + _STOP_GRACE_S
    return first or 0
