"""What the worker's seal checks cost per ticket: verifying the submission's
seal and every decision's, as approvals.services.execution does before
acting. No database: the records are built in memory, as the worker holds
them after its one query for the decisions.

    .venv/bin/python bench/seal_bench.py [--decisions 3] [--tickets 20000]
"""

import argparse
import os
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=3)
    parser.add_argument("--tickets", type=int, default=20000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ["SEAL_KEY"] = secrets.token_urlsafe(50)
    import django

    django.setup()
    from approvals import seals

    now = datetime.now(UTC)
    ticket = SimpleNamespace(
        pk=42,
        ref="CHG-000042",
        content_hash="c" * 64,
        required_approvals=args.decisions,
        approver_group_id=2,
        require_otp=True,
        policy_id=7,
        policy_digest="d" * 64,
        requester_id=1,
        created_at=now,
        seal="",
    )
    ticket.seal = seals.make(**seals.submission_fields(ticket))
    decisions = []
    for i in range(args.decisions):
        d = SimpleNamespace(
            pk=i + 1, approver_id=10 + i, decision="approve", content_hash=ticket.content_hash, created_at=now, seal=""
        )
        d.seal = seals.make(**seals.decision_fields(ticket, d))
        decisions.append(d)
    assert seals.records_problem(ticket, decisions) is None
    timings = []
    for _ in range(args.tickets):
        start = time.perf_counter()
        seals.records_problem(ticket, decisions)
        timings.append(time.perf_counter() - start)
    timings.sort()
    p50 = statistics.median(timings) * 1000
    p95 = timings[int(len(timings) * 0.95)] * 1000
    print(f"seal checks per ticket ({args.decisions} decisions): p50 {p50:.3f} ms, p95 {p95:.3f} ms (target <= 2 ms)")


if __name__ == "__main__":
    main()
