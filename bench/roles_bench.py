"""Role membership from the audit log: what the worker's check costs per
ticket (approvals/services/memberships.py), on a log of --entries entries
holding --people role entries.

    .venv/bin/python bench/roles_bench.py --entries 1000000 [--people 2000] [--checks 2000]

Needs PostgreSQL on localhost (as for the tests). Uses a database of its own,
twokey_bench_roles (BENCH_DATABASE_URL names the server), dropped and created
afresh; the log is generated with the portal's own hash chain and loaded
with COPY (bench/audit_bench.py's loader), the role entries written by the
portal's writer. Three figures, each for one check of a ticket with two
approvals: the first check in a process (it reads every role entry and
counts the log once), a check with nothing appended since the last, and a
check after ten entries (one of them a role entry) were appended.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SERVER = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/twokey_bench").rsplit("/", 1)[0]
DATABASE = "twokey_bench_roles"


def child(entries: int, people: int, checks: int) -> dict:
    import django

    django.setup()
    import audit_bench
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from accounts import role_log
    from approvals.models import Approval, Ticket
    from approvals.roles import ensure_roles
    from approvals.services import memberships
    from audit.writer import record

    call_command("migrate", verbosity=0)
    world = audit_bench.prepare_world(entries // audit_bench.ENTRIES_PER_TICKET + 1)
    audit_bench.load(world, entries)
    groups = ensure_roles()
    users = list(get_user_model().objects.filter(username__startswith="user").order_by("id")[:2])
    for user in users:
        user.groups.add(groups["approver"])
    started = time.perf_counter()
    extra = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"person{i:05d}") for i in range(max(0, people - len(users)))]
    )
    for user in [*users, *extra]:
        record("config.user.created", actor_name="bench", obj=user, details=role_log.granted(user))
    print(f"  wrote {people:,} role entries in {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)

    ticket = Ticket.objects.select_related("requester").first()
    decisions = [Approval(ticket=ticket, approver=u, decision="approve") for u in users]

    def check() -> float:
        began = time.perf_counter()
        problem = memberships.forged_roles_problem(ticket, decisions)
        elapsed = (time.perf_counter() - began) * 1000
        assert problem is None, problem
        return elapsed

    memberships.forget()
    first = check()
    quiet = [check() for _ in range(checks)]
    grown = []
    for i in range(max(1, checks // 10)):
        for j in range(9):
            record("test.event", actor_name="bench", details={"i": i, "j": j})
        record("config.user.created", actor_name="bench", obj=users[0], details=role_log.granted(users[0]))
        grown.append(check())
    return {
        "entries": entries,
        "people": people,
        "first_ms": round(first, 1),
        "quiet_median_ms": round(statistics.median(quiet), 3),
        "quiet_p95_ms": round(statistics.quantiles(quiet, n=20)[-1], 3),
        "grown_median_ms": round(statistics.median(grown), 3),
        "grown_p95_ms": round(statistics.quantiles(grown, n=20)[-1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.entries, args.people, args.checks)))
        return
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    import audit_bench

    env = {**os.environ, **audit_bench.ENV, "DATABASE_URL": f"{SERVER}/{DATABASE}"}
    done = subprocess.run(  # noqa: S603 - this script
        [sys.executable, __file__, "--child", *sys.argv[1:]], env=env, stdout=subprocess.PIPE, text=True, check=True
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
