"""The memory store on its own: the sweep with mixed lifetimes, memory per session,
and the cost of a load and a save.

    python bench/sweep.py              # a million sessions (about a minute)
    python bench/sweep.py --quick      # 20,000 sessions (seconds; the test suite uses it)

Sweep: ``--sessions`` sessions with mixed per-session idle timeouts (a
minute to thirty days; some with an absolute deadline; a third used again
after they were made), then one sweep at a time when about half are dead,
while ``--threads`` threads load and save a session every 0.5 ms. It
reports the total time, the longest and median hold of the store's lock
(one batch), the worst request latency during the sweep, and a second
sweep a second later (little is due).

Memory: tracemalloc over creating ``--memory`` sessions holding one small
int (and, as bench/run.py's "all features", a user in each), storage keys
included (the store keeps them), then the same sessions loaded once each
(a session in use is a dict): the total, and what each part costs. Then
the CPU time of a load and a save (a session in use), a create and a first
load, and a ``sessions_of`` among 10,000 users of 3 sessions each.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import secrets
import statistics
import sys
import threading
import time
import timeit
import tracemalloc
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wsgi_session.providers.memory import MemoryProvider  # noqa: E402

DAY = 86400.0
#: (idle, deadline after creation or None, share of the sessions)
MIX = [
    (60.0, None, 0.2),
    (1800.0, None, 0.3),
    (3600.0, 8 * 3600.0, 0.2),
    (DAY, None, 0.2),
    (30 * DAY, None, 0.1),
]


class _Timed(MemoryProvider):
    """Times each batch of the sweep: the time the lock is held."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.holds: list[float] = []
        self.cpu: list[float] = []

    def _sweep_batch(self, now: float) -> tuple[int, bool]:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return super()._sweep_batch(now)
        finally:
            self.cpu.append(time.thread_time() - c0)
            self.holds.append(time.perf_counter() - t0)


def fill(p: MemoryProvider, n: int, now: float) -> int:
    """``n`` sessions made over the last two hours with mixed lifetimes, a third
    of them used again (some dead by then, and dropped); returns how many of
    those left are dead at ``now``."""
    rng = random.Random(7)
    weights = [share for _, _, share in MIX]
    token = secrets.token_urlsafe
    data = {"n": 1}
    dead = 0
    for i in range(n):
        idle, lifetime, _share = rng.choices(MIX, weights)[0]
        created = now - 7200 + 7200 * i / n  # in time order, as a clock gives them
        deadline = None if lifetime is None else created + lifetime
        sid = token(32)
        p.create(sid, data, created, idle=idle, deadline=deadline)
        accessed = created
        if rng.random() < 1 / 3:
            accessed = rng.uniform(created, now)
            if p.load(sid, accessed) is None:  # already dead then: dropped
                continue
        end = accessed + idle if deadline is None else min(accessed + idle, deadline)
        dead += end <= now
    return dead


def sweep(n: int, threads: int, gc_batch: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {"max_sessions": n + 1000}
    if gc_batch is not None:
        options["gc_batch"] = gc_batch
    p = _Timed(**options)
    now = float(int(time.time()))  # whole seconds: dead sessions are then all due
    dead = fill(p, n, now)
    held = p.count()
    gc.collect()
    stop = threading.Event()
    sweeping = threading.Event()
    during: list[float] = []
    before: list[float] = []

    def serve() -> None:
        sid = secrets.token_urlsafe(32)
        p.create(sid, {"n": 0}, time.time(), idle=3600.0, deadline=None)
        perf = time.perf_counter
        due = perf()
        while not stop.is_set():
            due += 0.0005
            wait = due - perf()
            if wait > 0:
                time.sleep(wait)
            else:
                due = perf()
            p.load(sid, time.time())
            p.save(sid, {"n": 1}, (), time.time())
            (during if sweeping.is_set() else before).append(perf() - due)

    workers = [threading.Thread(target=serve) for _ in range(threads)]
    for w in workers:
        w.start()
    time.sleep(0.2)
    sweeping.set()
    t0 = time.perf_counter()
    removed = p.gc(now)
    seconds = time.perf_counter() - t0
    sweeping.clear()
    holds, cpu = p.holds, p.cpu
    left = p.count() - threads
    p.holds = []
    t0 = time.perf_counter()
    again = p.gc(now + 1)
    again_seconds = time.perf_counter() - t0
    stop.set()
    for w in workers:
        w.join()
    return {
        "sessions": n,
        "held": held,
        "dead": dead,
        "removed": removed,
        "seconds": seconds,
        "batches": len(holds),
        "max_hold": max(holds),
        "median_hold": statistics.median(holds),
        "max_cpu": max(cpu),
        "median_cpu": statistics.median(cpu),
        "requests_during": len(during),
        "max_latency_during": max(during, default=0.0),
        "max_latency_before": max(before, default=0.0),
        "again_removed": again,
        "again_batches": len(p.holds),
        "again_seconds": again_seconds,
        "buckets": len(p._buckets),
        "left": left,
    }


#: What bench/run.py's scenario 4 stores per session: (data, user) in its
#: minimal and all-features configurations.
KINDS = {
    "new": ({"n": 1}, None),
    "new, with a user": ({"n": 1, "user_id": "alice"}, "alice"),
}


def memory(n: int, data: dict[str, Any], user: str | None, loaded: bool) -> dict[str, float]:
    """Bytes per session (tracemalloc) for ``n`` sessions holding ``data``,
    storage keys included (the store keeps them), and what each part costs
    (``sys.getsizeof``, shared objects counted once). ``loaded``: each
    session loaded once since it was made (a session in use)."""
    token = secrets.token_urlsafe
    now = time.time()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    p = MemoryProvider()
    keys = [token(32) for _ in range(n)]
    for i, sid in enumerate(keys):
        # Times as a clock gives them: a new float per request.
        p.create(sid, dict(data), now + i * 1e-3, idle=1800.0, deadline=None, user=user)
    if loaded:
        for i, sid in enumerate(keys):
            p.load(sid, now + n * 1e-3 + i * 1e-3)
    del keys  # the store holds them now
    total = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {"per_session": total / n, **{k: v / n for k, v in parts(p).items()}}


def parts(p: MemoryProvider) -> dict[str, float]:
    """The bytes of each part of the store (shared objects counted once)."""
    seen: set[int] = set()

    def once(*objects: Any) -> int:
        size = 0
        for obj in objects:
            if id(obj) not in seen:
                seen.add(id(obj))
                size += sys.getsizeof(obj)
        return size

    out = dict.fromkeys(["key", "entry", "times", "shapes", "recency", "buckets", "users"], 0)
    segments = [p._probation.newer, p._probation.older, p._protected]
    for segment in segments:
        out["recency"] += sys.getsizeof(segment)
        for sid, entry in segment.items():
            out["key"] += once(sid)
            out["entry"] += sys.getsizeof(entry)
            if isinstance(entry, tuple):  # (created, due, shape, *values)
                out["times"] += once(entry[0], entry[1])
                out["shapes"] += once(entry[2])
                out["entry"] += once(*entry[3:])
            else:
                out["times"] += once(entry.created, entry.accessed, entry.idle, entry.due)
                out["entry"] += once(*entry.values())
    out["buckets"] = once(p._buckets, p._due, p._draining, *p._buckets.values())
    out["users"] = once(p._users, *p._users.values())
    return out


def hot_path(repeats: int) -> dict[str, float]:
    """Best of ``repeats`` for load, save, create and a first load (CPU time, per call)."""
    p = MemoryProvider()
    sid = secrets.token_urlsafe(32)
    p.create(sid, {"n": 1, "csrf": "x" * 43}, 1000.0, idle=3600.0, deadline=None)
    p.load(sid, 1000.0)
    changed = {"n": 2}
    number = 20_000
    out: dict[str, float] = {}
    calls = {
        "load": lambda: p.load(sid, 1001.0),
        "save": lambda: p.save(sid, changed, (), 1001.0),
    }
    for name, call in calls.items():
        times = timeit.repeat(call, number=number, repeat=repeats, timer=time.process_time)
        out[name] = min(times) / number
    # Each new session's create, then its first load (which makes a dict of it).
    new = [secrets.token_urlsafe(32) for _ in range(number)]
    for name in ("create", "first load"):
        best = 1.0
        for _ in range(repeats):
            q = MemoryProvider()
            t0 = time.process_time()
            for sid in new:
                q.create(sid, {"n": 1, "csrf": "x" * 43}, 1000.0, idle=3600.0, deadline=None)
            if name == "first load":
                t0 = time.process_time()
                for sid in new:
                    q.load(sid, 1001.0)
            best = min(best, (time.process_time() - t0) / number)
        out[name] = best
    return out


def users(n: int) -> float:
    """CPU time of ``sessions_of`` with ``n`` users of 3 sessions each."""
    p = MemoryProvider()
    token = secrets.token_urlsafe
    for u in range(n):
        for _ in range(3):
            p.create(token(32), {"n": 1}, 1000.0, idle=3600.0, deadline=None, user=f"u{u}")
    names = [f"u{u}" for u in range(0, n, max(1, n // 1000))]

    def lookups() -> None:
        for name in names:
            p.sessions_of(name, 1001.0)

    return min(timeit.repeat(lookups, number=5, repeat=5, timer=time.process_time)) / (
        5 * len(names)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run")
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--memory", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gc-batch", type=int)
    args = parser.parse_args(argv)
    if args.quick:
        args.sessions, args.memory = 20_000, 20_000
    s = sweep(args.sessions, args.threads, args.gc_batch)
    print(f"sweep: {s['sessions']:,} sessions with mixed lifetimes, {s['dead']:,} dead")
    print(f"   removed {s['removed']:,} in {s['seconds']:.2f} s, {s['batches']:,} batches")
    print(
        f"   lock held per batch: longest {s['max_hold'] * 1e3:.2f} ms, "
        f"median {s['median_hold'] * 1e3:.2f} ms (goal: <= 1 ms)"
    )
    print(
        f"   CPU time per batch (the work itself, without this machine's other load): "
        f"longest {s['max_cpu'] * 1e3:.2f} ms, median {s['median_cpu'] * 1e3:.2f} ms"
    )
    print(
        f"   {s['requests_during']:,} requests during the sweep, "
        f"worst latency {s['max_latency_during'] * 1e3:.2f} ms (before the sweep: "
        f"{s['max_latency_before'] * 1e3:.2f} ms)"
    )
    print(
        f"   a second sweep a second later: removed {s['again_removed']} "
        f"in {s['again_seconds'] * 1e6:.0f} us; buckets: {s['buckets']:,}"
    )
    if s["removed"] != s["dead"] or s["left"] != s["held"] - s["dead"]:
        print("   ERROR: the sweep did not remove exactly the dead sessions")
        return 1
    print(
        f"memory (tracemalloc) per session, {args.memory:,} sessions, storage keys included"
        " (bench/run.py's scenario 4 measures RSS: pymalloc rounds each object up to 16 B):"
    )
    columns = ["key", "entry", "times", "shapes", "recency", "buckets", "users"]
    print(f"   {'':34} {'total':>6}" + "".join(f"{c:>8}" for c in columns))
    for loaded in (False, True):
        for kind, (data, user) in KINDS.items():
            m = memory(args.memory, data, user, loaded)
            label = kind.replace("new", "in use (loaded once)") if loaded else kind
            cells = "".join(f"{m[c]:8.0f}" for c in columns)
            print(f"   {label:34} {m['per_session']:6.0f}{cells}")
    h = hot_path(7 if not args.quick else 2)
    print(
        f"CPU time per call: load {h['load'] * 1e9:.0f} ns, save {h['save'] * 1e9:.0f} ns"
        f" (a session in use); create {h['create'] * 1e9:.0f} ns,"
        f" first load {h['first load'] * 1e9:.0f} ns (a new session)"
    )
    n_users = 1000 if args.quick else 10_000
    print(
        f"sessions_of with {n_users:,} users of 3 sessions: "
        f"{users(n_users) * 1e6:.1f} us per call (CPU time)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
