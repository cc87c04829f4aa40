"""How fast ``manager.sessions_of(user)`` is with 10,000 users of 3 sessions
each, on every store, side by side (the per-user index never scans).

    python bench/accounts.py            # 10,000 users x 3 sessions
    python bench/accounts.py --quick    # 300 users, for the tests

Redis and PostgreSQL run privately (free loopback ports, temporary
directories), as bench/stores.py starts them.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stores import managers, store_options  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--users", type=int, default=10_000)
    args = parser.parse_args()
    users = 300 if args.quick else args.users
    with (
        tempfile.TemporaryDirectory() as directory,
        store_options(directory, redis=True, postgres=True) as options,
        managers(options) as stores,
    ):
        print(f"# sessions_of(user) with {users:,} users x 3 sessions; median of 200 lookups")
        print("| store | sessions_of | revoke_user (3 sessions) |")
        print("|---|---:|---:|")
        for name, manager in stores.items():
            manager.user_key = "user"
            for u in range(users):
                for _ in range(3):
                    manager.create({"user": f"u{u}"}, user=f"u{u}")
            picks = random.Random(1).sample(range(users), min(200, users))
            listed = []
            for u in picks:
                started = time.perf_counter()
                found = manager.sessions_of(f"u{u}")
                listed.append(time.perf_counter() - started)
                assert len(found) == 3, (name, len(found))
            revoked = []
            for u in picks[:50]:
                started = time.perf_counter()
                assert manager.revoke_user(f"u{u}") == 3
                revoked.append(time.perf_counter() - started)
            print(
                f"| {name} | {statistics.median(listed) * 1e6:,.0f} µs "
                f"| {statistics.median(revoked) * 1e6:,.0f} µs |"
            )


if __name__ == "__main__":
    main()
