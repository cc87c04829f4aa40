"""Machine instructions per request, counted by valgrind: ratios that do not wander.

    python bench/instructions.py            # scenarios 1-3, every implementation
    python bench/instructions.py --quick    # one scenario, Beaker and ours (tests)

On a shared machine the timings of bench/run.py move by 20-30% between runs;
the number of instructions a request executes does not (it moves by a few
per cent with the memory layout). bench/run.py times the same requests, and
its Beaker/wsgi_session ratios agree with these within the noise (4.3x
against 4.3x for scenario 1, all features, when this was written), so use
this script to see whether a change helped, and bench/run.py for the
figures of record.

Each count runs the request loop of bench/run.py (``time_requests``: a fresh
environ copy, the body iterated, close() called) under ``valgrind
--tool=callgrind``, once with N requests and once with none; the difference
over N is the cost of one request. User-space instructions only: a system
call (``os.getpid()``, a lock that sleeps) counts as the few instructions
that make it. Needs valgrind (``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402  (bench/run.py: the apps and the request loop)

IMPLS = ["bare", "beaker", "wsgi_session", "wsgi_session+all"]
SCENARIOS = [
    (1, "browser", "existing session, read + write, browser header"),
    (1, "one", "existing session, read + write, one-cookie header"),
    (2, "browser", "new visitor, browser header"),
    (2, "one", "new visitor, no Cookie header"),
    (3, "browser", "untouched request"),
]


def worker(impl: str, scenario: int, header: str, n: int) -> None:
    """Serve ``n`` requests of a scenario (after a warm-up), as bench/run.py does."""
    if scenario == 3 or impl == "bare":
        app = run.build(impl, run.untouched_app)
        environ = run.base_environ("x" * 43 if scenario != 3 else None, header)
    else:
        key = run.BEAKER_KEY if impl == "beaker" else run.WS_KEY
        app = run.build(impl, run._rw_app(key, impl == "wsgi_session+all"))
        if scenario == 1:
            sid = run.cookie_value(run.call(app, run.base_environ()))
            environ = run.base_environ(sid, header)
        else:
            environ = run.base_environ(None, header)
    run.time_requests(app, environ, 250, 1)  # warm up: caches, the id pool
    if n:
        run.time_requests(app, environ, n // 2, 1)  # n requests in all


def count(impl: str, scenario: int, header: str, n: int) -> int:
    """Instructions the whole worker process executes."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        impl,
        str(scenario),
        header,
        str(n),
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stderr
    found = re.search(r"Collected : (\d+)", out)
    if found is None:
        raise RuntimeError(f"no count in valgrind's output: {out[-500:]}")
    return int(found.group(1))


def per_request(impl: str, scenario: int, header: str, n: int) -> float:
    n -= n % 2
    return (count(impl, scenario, header, n) - count(impl, scenario, header, 0)) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one scenario, for tests")
    parser.add_argument("-n", type=int, default=5000, help="requests per count")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        impl, scenario, header, n = args.worker
        worker(impl, int(scenario), header, int(n))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind): nothing counted")
        return 1
    scenarios = SCENARIOS[:1] if args.quick else SCENARIOS
    impls = ["beaker", "wsgi_session+all"] if args.quick else IMPLS
    n = 200 if args.quick else args.n
    if not run.have("beaker"):
        impls = [i for i in impls if i != "beaker"]
    print(f"instructions per request (valgrind, {n} requests a count)")
    results: dict[str, Any] = {}
    for scenario, header, title in scenarios:
        counts = {impl: per_request(impl, scenario, header, n) for impl in impls}
        results[f"{scenario}-{header}"] = counts
        print(f"\n{scenario}. {title}")
        for impl, value in counts.items():
            line = f"   {impl:18} {value:>9,.0f}"
            beaker = counts.get("beaker")
            if beaker and impl.startswith("wsgi_session"):
                if scenario == 3 and "bare" in counts:
                    line += f"   +{value - counts['bare']:,.0f} over the bare app"
                else:
                    line += f"   Beaker/wsgi_session {beaker / value:.1f}x"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
