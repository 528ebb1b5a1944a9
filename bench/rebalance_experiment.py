"""Rebalance experiment for the processor runtime (ADR 009): faust agents vs KafkaBus.

For each runtime ("faust": bench/faust_runner.py, "aiokafka":
services.common.bus.kafka.KafkaBus.subscribe, exactly as the product uses it) and each
variant, on the real Kafka at 127.0.0.1:9092:

  1. create a fresh topic (6 partitions) and group, both prefixed "faustx-";
  2. start TWO worker processes (this script, `worker` sub-command) and wait until the
     group is Stable with 2 members;
  3. produce N=3000 keyed records (200 keys; value = the key's sequence number);
  4. the workers' handler sleeps 1-5 ms, then appends
     "partition offset key seq monotonic_ns pid" to its own file;
  5. variant "kill":         SIGKILL the busier worker once 1/3 of the records are processed;
     variant "kill-restart": same, then start a replacement worker 2 s later (a second
                             rebalance, a join, while the survivor is busy);
     variant "write-kill":   worker 0 SIGKILLs itself inside the handler right after
                             writing its K-th record (killed after its write, before
                             its commit); the record must be redelivered to the survivor;
  6. wait (bounded) until the union of processed (partition, offset) covers all N;
  7. wait (bounded) until the group's committed offsets reach the end offsets, sampling
     them every second (a partition whose committed offset stays below the end is stuck);
  8. SIGTERM the survivors (SIGKILL after a timeout) and analyse the files.

Usage:
  .venv/bin/python bench/rebalance_experiment.py                       # everything, 3 runs each
  .venv/bin/python bench/rebalance_experiment.py --runtimes aiokafka --variants kill --runs 1
Results: <outdir>/results.json and results.md (outdir printed at the end; default
/tmp/faustx-rebalance/<timestamp>), per-run worker logs and processed files.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BOOTSTRAP = "127.0.0.1:9092"
PARTITIONS = 6


# ----------------------------------------------------------------------------- worker


def worker_main(a: argparse.Namespace) -> None:
    from services.common.bus.port import Record

    fd = os.open(a.out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    count = 0
    rnd = random.Random(os.getpid())

    async def handler(rec: Record) -> None:
        nonlocal count
        await asyncio.sleep(rnd.uniform(a.sleep_min_ms, a.sleep_max_ms) / 1000.0)
        line = f"{rec.partition} {rec.offset} {rec.key.decode()} {rec.value.decode()} {time.monotonic_ns()} {os.getpid()}\n"
        os.write(fd, line.encode())  # O_APPEND, unbuffered: survives SIGKILL
        count += 1
        if a.die_after and count >= a.die_after:
            os.write(fd, f"# SELF-KILL after write of {rec.partition} {rec.offset}\n".encode())
            os.kill(os.getpid(), signal.SIGKILL)

    if a.runtime == "faust":
        from faust_runner import run_worker  # bench/faust_runner.py, beside this script

        run_worker(a.group, a.topic, handler, a.partitions, broker=f"kafka://{BOOTSTRAP}",
                   loglevel="info", datadir=a.datadir)
    else:
        import logging

        logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")

        async def main() -> None:
            from services.common.bus.kafka import KafkaBus

            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, stop.set)
            bus = KafkaBus(f"kafka://{BOOTSTRAP}", client_id=f"faustx-{os.getpid()}")
            await bus.start()
            await bus.subscribe(a.topic, a.group, handler)
            logging.getLogger("faustx").info("worker %d subscribed to %s as %s", os.getpid(), a.topic, a.group)
            await stop.wait()
            logging.getLogger("faustx").info("SIGTERM: closing")
            await bus.close()

        asyncio.run(main())


# ----------------------------------------------------------------------------- kafka helpers


async def create_topic(topic: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="faustx-admin")
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def delete_topic(topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="faustx-admin")
    await admin.start()
    try:
        await admin.delete_topics([topic])
    except Exception:
        pass
    finally:
        await admin.close()


async def produce(topic: str, n: int, keys: int) -> dict[int, int]:
    """n records, key k### round-robin, value = that key's sequence number; returns end offsets."""
    from aiokafka import AIOKafkaProducer, TopicPartition
    from aiokafka import AIOKafkaConsumer

    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        futs = []
        for i in range(n):
            key = f"k{i % keys:03d}".encode()
            futs.append(await producer.send(topic, key=key, value=str(i // keys).encode()))
        await producer.flush()
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {tp.partition: off for tp, off in ends.items()}


class GroupProbe:
    def __init__(self, group: str, topic: str) -> None:
        self.group, self.topic = group, topic
        self.admin: Any = None

    async def start(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        self.admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="faustx-probe")
        await self.admin.start()

    async def close(self) -> None:
        if self.admin is not None:
            await self.admin.close()

    async def describe(self) -> tuple[str, int]:
        resp = await self.admin.describe_consumer_groups([self.group])
        for r in resp:
            for g in r.groups:
                # (error_code, group_id, state, protocol_type, protocol, members, ...)
                return str(g[2]), len(g[5])
        return "?", 0

    async def committed(self) -> dict[int, int]:
        offs = await self.admin.list_consumer_group_offsets(self.group)
        return {tp.partition: om.offset for tp, om in offs.items() if tp.topic == self.topic}


# ----------------------------------------------------------------------------- orchestrator


def read_lines(path: Path) -> list[tuple[int, int, str, int, int, int]]:
    out = []
    try:
        data = path.read_text()
    except FileNotFoundError:
        return out
    for ln in data.splitlines():
        if not ln or ln.startswith("#"):
            continue
        parts = ln.split()
        if len(parts) != 6:
            continue  # a line torn by SIGKILL (os.write of one short line is atomic in practice)
        p, o, k, s, t, pid = parts
        out.append((int(p), int(o), k, int(s), int(t), int(pid)))
    return out


def spawn(a: argparse.Namespace, runtime: str, topic: str, group: str, rundir: Path, idx: int, die_after: int = 0) -> subprocess.Popen:
    out = rundir / f"processed-{idx}.txt"
    log = open(rundir / f"worker-{idx}.log", "wb")
    cmd = [sys.executable, str(Path(__file__).resolve()), "worker", "--runtime", runtime, "--topic", topic,
           "--group", group, "--out", str(out), "--partitions", str(PARTITIONS),
           "--sleep-min-ms", str(a.sleep_min_ms), "--sleep-max-ms", str(a.sleep_max_ms),
           "--datadir", str(rundir / f"faust-data-{idx}")]
    if die_after:
        cmd += ["--die-after", str(die_after)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True)
    log.close()
    return proc


def stop_proc(proc: subprocess.Popen, timeout: float) -> str:
    if proc.poll() is not None:
        return f"exited rc={proc.returncode}"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
        return f"SIGTERM -> rc={proc.returncode}"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return f"SIGTERM ignored for {timeout:.0f}s -> SIGKILL"


async def run_one(a: argparse.Namespace, runtime: str, variant: str, run: int, outdir: Path) -> dict[str, Any]:
    tag = f"faustx-rb-{runtime}-{variant}-{run}-{uuid.uuid4().hex[:6]}"
    topic, group = tag, f"{tag}-g"
    rundir = outdir / tag
    rundir.mkdir(parents=True)
    n = a.n
    res: dict[str, Any] = {"runtime": runtime, "variant": variant, "run": run, "topic": topic, "group": group}
    print(f"\n=== {runtime} / {variant} / run {run}: {topic}", flush=True)
    await create_topic(topic, PARTITIONS)
    die_after = (n // 6) if variant == "write-kill" else 0
    procs: dict[int, subprocess.Popen] = {0: spawn(a, runtime, topic, group, rundir, 0, die_after), 1: spawn(a, runtime, topic, group, rundir, 1)}
    probe = GroupProbe(group, topic)
    await probe.start()
    files = {i: rundir / f"processed-{i}.txt" for i in range(3)}
    timeline: list[dict[str, Any]] = []
    killed: int | None = None
    try:
        # 2. both members in a Stable group
        t_wait = time.monotonic()
        state, members = "?", 0
        while time.monotonic() - t_wait < a.join_timeout:
            state, members = await probe.describe()
            if state == "Stable" and members == 2:
                break
            if any(p.poll() is not None for p in procs.values()):
                break
            await asyncio.sleep(0.25)
        res["join_s"] = round(time.monotonic() - t_wait, 1)
        if not (state == "Stable" and members == 2):
            res["error"] = f"group not Stable with 2 members after {a.join_timeout}s: {state}/{members}"
            print("  !!", res["error"], flush=True)
            return res
        await asyncio.sleep(1.0)  # let both members seek/fetch

        # 3. produce
        ends = await produce(topic, n, a.keys)
        t0 = time.monotonic()
        res["end_offsets"] = ends
        print(f"  produced {n} records, end offsets {ends}", flush=True)

        # 5./6. watch, kill, wait for coverage
        t_kill: float | None = None
        killed_at_count = 0
        per_worker_at_kill: dict[int, int] = {}
        t_done: float | None = None
        restarted = False
        last_sample = 0.0
        deadline_total = t0 + a.deadline + 30
        while True:
            now = time.monotonic()
            lines = {i: read_lines(f) for i, f in files.items()}
            seen = {(l[0], l[1]) for ls in lines.values() for l in ls}
            if killed is None:
                if variant in ("kill", "kill-restart") and len(seen) >= n // 3:
                    killed = max((0, 1), key=lambda i: len(lines[i]))
                    per_worker_at_kill = {i: len(lines[i]) for i in (0, 1)}
                    procs[killed].send_signal(signal.SIGKILL)
                    t_kill, killed_at_count = now, len(seen)
                    print(f"  SIGKILL worker {killed} (pid {procs[killed].pid}) at {len(seen)} processed; per worker {per_worker_at_kill}", flush=True)
                elif variant == "write-kill" and procs[0].poll() is not None:
                    killed = 0
                    per_worker_at_kill = {i: len(lines[i]) for i in (0, 1)}
                    t_kill, killed_at_count = now, len(seen)
                    print(f"  worker 0 killed itself (rc {procs[0].returncode}) at {len(seen)} processed; per worker {per_worker_at_kill}", flush=True)
            if variant == "kill-restart" and killed is not None and not restarted and now - (t_kill or now) >= 2.0:
                procs[2] = spawn(a, runtime, topic, group, rundir, 2)
                restarted = True
                print(f"  started replacement worker 2 (pid {procs[2].pid})", flush=True)
            if now - last_sample >= 1.0:
                last_sample = now
                try:
                    committed = await probe.committed()
                    st, mem = await probe.describe()
                except Exception as exc:  # noqa: BLE001
                    committed, st, mem = {}, f"probe failed: {exc!r}", 0
                per_p = defaultdict(int)
                for (p, _o) in seen:
                    per_p[p] += 1
                timeline.append({"t": round(now - t0, 1), "processed": len(seen), "state": st, "members": mem,
                                 "committed": committed, "processed_per_partition": dict(sorted(per_p.items()))})
            if len(seen) >= n and t_done is None:
                t_done = now
                print(f"  all {n} processed at t={now - t0:.1f}s" + (f", {now - t_kill:.1f}s after the kill" if t_kill else ""), flush=True)
                break
            if killed is None and now > deadline_total:
                print("  !! the kill condition never happened", flush=True)
                break
            if t_kill is not None and now - t_kill > a.deadline:
                print(f"  !! deadline: {len(seen)}/{n} processed {a.deadline}s after the kill", flush=True)
                break
            await asyncio.sleep(0.05)

        # 7. committed offsets reach the end?
        t_c = time.monotonic()
        committed: dict[int, int] = {}
        while time.monotonic() - t_c < a.commit_grace:
            try:
                committed = await probe.committed()
            except Exception:  # noqa: BLE001
                committed = {}
            if all(committed.get(p, -1) >= ends[p] for p in ends):
                break
            await asyncio.sleep(0.5)
        res["commit_wait_s"] = round(time.monotonic() - t_c, 1)
        res["committed_final"] = committed
        res["stuck_partitions"] = sorted(p for p in ends if committed.get(p, -1) < ends[p])
        try:
            res["group_final"] = list(await probe.describe())
        except Exception as exc:  # noqa: BLE001
            res["group_final"] = [f"probe failed: {exc!r}", 0]

        # analysis
        lines = {i: read_lines(f) for i, f in files.items()}
        allrecs = [l for ls in lines.values() for l in ls]
        distinct = {(l[0], l[1]) for l in allrecs}
        missing = sorted({(p, o) for p in ends for o in range(ends[p])} - distinct)
        res.update({
            "killed_worker": killed,
            "processed_at_kill": killed_at_count,
            "per_worker_at_kill": per_worker_at_kill,
            "all_processed": len(distinct) == n,
            "distinct": len(distinct),
            "lines": len(allrecs),
            "duplicates": len(allrecs) - len(distinct),
            "missing": len(missing),
            "missing_per_partition": {p: sum(1 for (q, _o) in missing if q == p) for p in sorted({q for q, _o in missing})},
            "recovery_s": round(t_done - t_kill, 1) if (t_done and t_kill) else None,
            "total_s": round(t_done - t0, 1) if t_done else None,
            "per_worker_lines": {i: len(ls) for i, ls in lines.items() if ls},
        })
        # per-key order: the first processing of seq s must come after the first of s-1
        first: dict[str, dict[int, int]] = defaultdict(dict)
        for p, o, k, s, t, pid in allrecs:
            if s not in first[k] or t < first[k][s]:
                first[k][s] = t
        violations = []
        for k, ts in first.items():
            for s in sorted(ts):
                if s > 0 and s - 1 in ts and ts[s] < ts[s - 1]:
                    violations.append((k, s))
        res["order_violations_global"] = len(violations)
        res["order_violation_examples"] = violations[:5]
        survivors = [i for i in lines if i != killed and lines[i]]
        surv_ooo = 0
        replays = 0
        for i in survivors:
            hi: dict[str, int] = {}
            for p, o, k, s, t, pid in lines[i]:
                if t == first[k].get(s) and s < hi.get(k, -1):
                    surv_ooo += 1
                if t != first[k].get(s):
                    replays += 1
                hi[k] = max(hi.get(k, -1), s)
        res["survivor_order_violations"] = surv_ooo
        res["survivor_replays"] = replays
        if variant == "write-kill" and lines[0]:
            raw = files[0].read_text().splitlines()
            marker = [ln for ln in raw if ln.startswith("# SELF-KILL")]
            last = lines[0][-1]
            again = [l for i in survivors for l in lines[i] if (l[0], l[1]) == (last[0], last[1])]
            res["killed_record"] = {"partition": last[0], "offset": last[1], "key": last[2], "seq": last[3],
                                    "marker": marker[-1] if marker else None,
                                    "redelivered": bool(again),
                                    "redelivered_same_payload": all((l[2], l[3]) == (last[2], last[3]) for l in again) if again else None,
                                    "redelivery_after_kill_ms": round((min(l[4] for l in again) - last[4]) / 1e6) if again else None}
            # the state an idempotent handler keeps: {(key, seq)}; redelivery must not change it
            state = {(l[2], l[3]) for l in allrecs}
            res["state_distinct_key_seq"] = len(state)
            res["state_unchanged_by_redelivery"] = len(state) == n
        # commit stalls: longest time a partition with lag kept the same committed offset
        stalls: dict[int, float] = {}
        prev: dict[int, tuple[int, float]] = {}
        for smp in timeline:
            for p in ends:
                c = smp["committed"].get(p, -1) if smp["committed"] else None
                if c is None:
                    continue
                if c >= ends[p]:
                    prev.pop(p, None)
                    continue
                if p in prev and prev[p][0] == c:
                    stalls[p] = max(stalls.get(p, 0.0), smp["t"] - prev[p][1])
                else:
                    prev[p] = (c, smp["t"])
        res["max_commit_stall_s"] = round(max(stalls.values()), 1) if stalls else 0.0
        res["timeline"] = timeline
        return res
    finally:
        stops = {}
        for i, p in procs.items():
            if i == killed and p.poll() is not None:
                stops[i] = f"killed rc={p.returncode}"
            else:
                stops[i] = stop_proc(p, a.stop_timeout)
        res["shutdown"] = stops
        await probe.close()
        if not a.keep_topics:
            await delete_topic(topic)
        print(f"  shutdown: {stops}", flush=True)
        (rundir / "result.json").write_text(json.dumps(res, indent=1, default=str))


def summary_md(results: list[dict[str, Any]], versions: dict[str, str]) -> str:
    rows = ["| runtime | variant | run | all processed? | missing | duplicates | kill -> all processed (s) | stuck partitions (committed < end) | max commit stall (s) | order violations | redelivered killed record | survivor shutdown |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['runtime']} | {r['variant']} | {r['run']} | ERROR: {r['error']} | | | | | | | | |")
            continue
        red = r.get("killed_record", {}).get("redelivered") if r["variant"] == "write-kill" else "n/a"
        surv = "; ".join(f"{k}: {v}" for k, v in r.get("shutdown", {}).items() if k != r.get("killed_worker"))
        rows.append(
            f"| {r['runtime']} | {r['variant']} | {r['run']} | {'yes' if r['all_processed'] else 'NO'} | {r['missing']} "
            f"{r['missing_per_partition'] or ''} | {r['duplicates']} | {r['recovery_s']} | {r['stuck_partitions'] or 'none'} | "
            f"{r['max_commit_stall_s']} | {r['order_violations_global']} / {r['survivor_order_violations']} | {red} | {surv} |")
    head = ", ".join(f"{k} {v}" for k, v in versions.items())
    return f"Versions: {head}\n\n" + "\n".join(rows) + "\n"


async def orchestrate(a: argparse.Namespace) -> int:
    import aiokafka
    import faust

    versions = {"faust-streaming": faust.__version__, "aiokafka": aiokafka.__version__, "python": sys.version.split()[0]}
    outdir = Path(a.outdir or f"/tmp/faustx-rebalance/{time.strftime('%Y%m%d-%H%M%S')}")
    outdir.mkdir(parents=True, exist_ok=True)
    results = []
    for runtime in a.runtimes:
        for variant in a.variants:
            if variant == "write-kill" and runtime not in a.write_kill_runtimes:
                continue
            for run in range(1, a.runs + 1):
                try:
                    r = await asyncio.wait_for(run_one(a, runtime, variant, run, outdir), a.deadline + a.join_timeout + a.commit_grace + 120)
                except asyncio.TimeoutError:
                    r = {"runtime": runtime, "variant": variant, "run": run, "error": "run timed out"}
                results.append(r)
                brief = {k: v for k, v in r.items() if k not in ("timeline", "end_offsets", "committed_final")}
                print("  result:", json.dumps(brief, default=str), flush=True)
    (outdir / "results.json").write_text(json.dumps({"versions": versions, "results": results}, indent=1, default=str))
    md = summary_md(results, versions)
    (outdir / "results.md").write_text(md)
    print("\n" + md)
    print(f"outdir: {outdir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    w = sub.add_parser("worker")
    w.add_argument("--runtime", choices=("faust", "aiokafka"), required=True)
    w.add_argument("--topic", required=True)
    w.add_argument("--group", required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--partitions", type=int, default=PARTITIONS)
    w.add_argument("--sleep-min-ms", type=float, default=1.0)
    w.add_argument("--sleep-max-ms", type=float, default=5.0)
    w.add_argument("--die-after", type=int, default=0)
    w.add_argument("--datadir", default=None)
    for p in (ap,):
        p.add_argument("--runtimes", nargs="+", default=["faust", "aiokafka"], choices=("faust", "aiokafka"))
        p.add_argument("--variants", nargs="+", default=["kill", "write-kill", "kill-restart"],
                       choices=("kill", "write-kill", "kill-restart"))
        p.add_argument("--write-kill-runtimes", nargs="+", default=["aiokafka", "faust"])
        p.add_argument("--runs", type=int, default=3)
        p.add_argument("--n", type=int, default=3000)
        p.add_argument("--keys", type=int, default=200)
        p.add_argument("--sleep-min-ms", type=float, default=1.0)
        p.add_argument("--sleep-max-ms", type=float, default=5.0)
        p.add_argument("--deadline", type=float, default=90.0, help="seconds after the kill to process everything")
        p.add_argument("--join-timeout", type=float, default=60.0)
        p.add_argument("--commit-grace", type=float, default=20.0)
        p.add_argument("--stop-timeout", type=float, default=20.0)
        p.add_argument("--outdir", default=None)
        p.add_argument("--keep-topics", action="store_true")
    a = ap.parse_args(argv)
    if a.cmd == "worker":
        worker_main(a)
        return 0
    return asyncio.run(orchestrate(a))


if __name__ == "__main__":
    sys.exit(main())
