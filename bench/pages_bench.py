"""Page benchmark: the portal's dashboard, ticket list, ticket detail and
audit log with 100,000 tickets and 1,000,000 audit entries in PostgreSQL,
each measured with wrk (8 connections, from a second process) beside a
trivial Django view on the same gunicorn server in the same run.

    .venv/bin/python bench/pages_bench.py [--tickets 100000] [--entries 1000000]
        [--duration 20] [--rounds 5] [--connections 8] [--workers 4] [--reuse]

Needs PostgreSQL and Redis on localhost (as for the tests), Debian's wrk and
the built lab (scripts/build-vcsim.sh): the fill starts a vcsim lab to label
its zones and to resolve the objects the tickets bind, then stops it.
Uses its own database (twokey_pagesbench) and Redis databases 7 and 8.
--reuse keeps a database filled by an earlier run with the same sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB = "twokey_pagesbench"
os.environ.update(
    DJANGO_SETTINGS_MODULE="portal.settings",
    DATABASE_URL=os.environ.get("BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DB}"),
    REDIS_URL="redis://127.0.0.1:6379/7",
    CACHE_URL="redis://127.0.0.1:6379/8",
    TWOKEY_LOCAL_KEYS="1",
    TWOKEY_DATA_DIR=str(ROOT / "var" / "bench"),
    LOG_LEVEL="WARNING",
    DEBUG="0",
    ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
    BENCH_TRIVIAL_VIEW="1",
    TWOKEY_HTTPS="0",
)

# wrk's own percentiles stop at 50/75/90/99; this prints the ones we compare.
WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("BENCH p50=%d p95=%d p99=%d requests=%d errors=%d non2xx=%d\\n",
    latency:percentile(50), latency:percentile(95), latency:percentile(99), summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""

KIND_WEIGHTS = [("vm_create", 40), ("vm_migrate", 35), ("admin_access", 25)]
OLD_STATES = [("succeeded", 78), ("failed", 4), ("rejected", 6), ("cancelled", 4), ("expired", 8)]
RECENT_STATES = [("pending", 25), ("approved", 2), ("running", 2)] + OLD_STATES
FINISHED = ("succeeded", "failed", "revoked")
VM_NAMES = ["prod-web-01", "prod-db-01", "dev-app-01", "dev-app-02", "dmz-proxy-01"]
# The moves the tickets make, by name: within prod, within dev, dev to prod.
MOVES = [
    {"vm": "prod-web-01", "target_host": "prod-esx-02"},
    {"vm": "prod-db-01", "target_host": "prod-esx-01"},
    {"vm": "dev-app-01", "target_host": "dev-esx-02"},
    {"vm": "dev-app-02", "target_host": "dev-esx-01"},
    {
        "vm": "dev-app-01",
        "target_host": "prod-esx-01",
        "target_datastore": "ds-prod",
        "network_map": {"pg-dev": "pg-prod"},
    },
]


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def admin_url() -> str:
    return os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"


def database_filled(tickets: int, entries: int) -> bool:
    import psycopg

    with psycopg.connect(admin_url(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone():
            return False
    try:
        with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
            have_tickets = conn.execute("SELECT count(*) FROM approvals_ticket").fetchone()[0]
            have_entries = conn.execute("SELECT max(seq) FROM audit_auditentry").fetchone()[0] or 0
    except psycopg.Error:
        return False
    return have_tickets == tickets and have_entries >= entries


def recreate_database() -> None:
    import psycopg

    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")


def pick(rng: random.Random, weighted):
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights)[0]


def make_users():
    """Requesters, approvers, an auditor; one password hash for all (hashing
    each would take minutes and measures nothing)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from approvals.roles import ensure_roles

    groups = ensure_roles()
    User = get_user_model()
    password = make_password("bench-password-not-secret")
    names = {
        "requester": ["alice"] + [f"req{i:03d}" for i in range(1, 200)],
        "approver": ["bob", "carol"] + [f"appr{i:02d}" for i in range(1, 19)],
        "auditor": ["erin"],
    }
    users = {}
    for role, usernames in names.items():
        made = User.objects.bulk_create(User(username=n, password=password) for n in usernames)
        through = User.groups.through
        through.objects.bulk_create(through(user_id=u.pk, group_id=groups[role].pk) for u in made)
        users[role] = made
    return users, groups


def ticket_shapes(connector) -> dict[str, list[tuple]]:
    """(params, zone, policy id, policy digest) per kind, as submission
    stores them: every object resolved to its id, with `objects` naming each
    (the submission checks themselves, run once per body)."""
    from approvals.inventory import StoredIndex
    from approvals.validation import check_submission
    from tests.approvals.helpers import VM_CREATE

    index = StoredIndex.for_connector(connector)

    def checked(kind, params):
        result = check_submission(kind=kind, connector=connector, params=dict(params), index=index)
        return result.params, result.zone.name, result.policy.pk, result.policy.digest()

    access = {"principal": "LAB\\someone", "role": "VirtualMachinePowerUser", "duration_minutes": 60}
    return {
        "vm_create": [checked("vm_create", VM_CREATE)],
        "vm_migrate": [checked("vm_migrate", move) for move in MOVES],
        "admin_access": [checked("admin_access", {**access, "entity": name}) for name in VM_NAMES],
    }


def copy_rows(cur, model, columns: str, rows) -> None:
    """COPY rows of `columns` into the model's table; its other columns get
    their fields' defaults, so a field added later need not be named here."""
    from django.db import models

    named = [c.strip() for c in columns.split(",")]
    rest = [f for f in model._meta.concrete_fields if f.column not in named]
    defaults = tuple(json.dumps(f.get_default()) if isinstance(f, models.JSONField) else f.get_default() for f in rest)
    table = model._meta.db_table
    with cur.copy(f"COPY {table} ({', '.join(named + [f.column for f in rest])}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row((*row, *defaults))


def fill(tickets: int, entries: int) -> None:
    import psycopg
    from django.conf import settings
    from django.core.management import call_command

    from approvals.lab import label_lab
    from approvals.models import Approval, Ticket
    from audit.chain import Signer, canonical, hashed_fields
    from connectors.models import Connector
    from tests.fixtures.vcsim import VcsimProcess

    recreate_database()
    say("migrating")
    call_command("migrate", verbosity=0)
    say("labelling a vcsim lab")
    # Saved directly, not registered: registration would audit, and the log
    # is written in one piece below. The pages measured never read the lab.
    with VcsimProcess() as lab:
        connector = Connector(name="lab", url=lab.url, username=lab.username, verify_tls=False)
        connector.set_password(lab.password)
        connector.save()
        label_lab(connector)
        shapes = ticket_shapes(connector)
    users, groups = make_users()
    requesters, approvers = users["requester"], users["approver"]
    approver_group = groups["approver"].pk
    rng = random.Random(42)  # noqa: S311 - repeatable test data, not secrets
    signer = Signer(settings.AUDIT_HMAC_KEY)

    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=365)
    spacing = (now - start) / tickets
    recent = now - timedelta(days=7)

    say(f"generating {tickets} tickets and {entries} audit entries")
    ticket_rows, approval_rows, plans = [], [], []
    approval_id = 0
    for i in range(tickets):
        ticket_id = i + 1
        created = start + spacing * i
        kind = pick(rng, KIND_WEIGHTS)
        state = pick(rng, RECENT_STATES if created > recent else OLD_STATES)
        if kind == "admin_access" and state == "succeeded" and created < now - timedelta(days=1):
            state = "revoked"
        requester = rng.choice(requesters)
        required = 2 if kind == "admin_access" or (kind == "vm_migrate" and i % 3 == 0) else 1
        params, zone, policy_id, policy_digest = rng.choice(shapes[kind])
        if kind == "vm_create":
            params = {**params, "name": f"bench-{ticket_id}"}
        elif kind == "admin_access":
            params = {**params, "principal": f"LAB\\{requester.username}"}
        deciders = rng.sample(approvers, required)
        if state == "pending":
            deciders = deciders[: required - 1]
        elif state == "rejected":
            deciders = deciders[:1]
        elif state in ("cancelled", "expired"):
            deciders = []
        executed = state in ("running", "succeeded", "failed", "revoked")
        finished = state in ("succeeded", "failed", "revoked")
        task = f"task-{ticket_id}" if executed else ""
        result = {"summary": "done", "already_done": False, "object_id": None} if finished and state != "failed" else {}
        ticket_rows.append(
            (
                ticket_id,
                kind,
                state,
                connector.pk,
                requester.pk,
                "Bench ticket: routine change.",
                json.dumps(params),
                "0" * 64,
                required,
                approver_group,
                False,
                zone,
                created + timedelta(days=7),
                created,
                created,
                str(uuid.UUID(int=rng.getrandbits(128))),
                1 if executed else 0,
                "",
                created + timedelta(seconds=60) if state in ("approved", "running", *FINISHED) else None,
                created + timedelta(seconds=61) if executed else None,
                created + timedelta(seconds=120) if finished else None,
                task,
                "done" if finished else "",
                json.dumps(result),
                "The hypervisor refused: no space left" if state == "failed" else "",
                created + timedelta(minutes=60)
                if kind == "admin_access" and state in ("succeeded", "revoked")
                else None,
                policy_id,
                policy_digest,
            )
        )
        for n, decider in enumerate(deciders):
            approval_id += 1
            decision = "reject" if state == "rejected" else "approve"
            approval_rows.append(
                (
                    approval_id,
                    ticket_id,
                    decider.pk,
                    decision,
                    "Not in this window." if decision == "reject" else "",
                    "0" * 64,
                    created + timedelta(seconds=20 + 10 * n),
                )
            )
        plans.append((ticket_id, created, kind, state, requester, deciders, required, task))

    def events(plan):
        ticket_id, created, kind, state, requester, deciders, required, task = plan
        yield created - timedelta(seconds=1), requester, "auth.login", None, "auth.user", str(requester.pk), {}
        ref = f"CHG-{ticket_id:06d}"
        yield (
            created,
            requester,
            "ticket.submitted",
            ticket_id,
            "approvals.ticket",
            str(ticket_id),
            {
                "ref": ref,
                "kind": kind,
                "connector": "lab",
                "required_approvals": required,
                "approver_group": "approver",
            },
        )
        for n, decider in enumerate(deciders):
            at = created + timedelta(seconds=20 + 10 * n)
            yield at - timedelta(seconds=1), decider, "auth.login", None, "auth.user", str(decider.pk), {}
            if state == "rejected":
                yield (
                    at,
                    decider,
                    "ticket.rejected",
                    ticket_id,
                    "approvals.ticket",
                    str(ticket_id),
                    {"from": "pending", "to": "rejected", "comment": "Not in this window."},
                )
            else:
                yield (
                    at,
                    decider,
                    "ticket.approval",
                    ticket_id,
                    "approvals.ticket",
                    str(ticket_id),
                    {"comment": "", "given": n + 1, "required": required},
                )
        if state in ("cancelled", "expired"):
            yield (
                created + timedelta(seconds=40),
                requester if state == "cancelled" else "sweeper",
                f"ticket.{state}",
                ticket_id,
                "approvals.ticket",
                str(ticket_id),
                {"from": "pending", "to": state},
            )
        if state in ("approved", "running", "succeeded", "failed", "revoked"):
            yield (
                created + timedelta(seconds=60),
                deciders[-1],
                "ticket.approved",
                ticket_id,
                "approvals.ticket",
                str(ticket_id),
                {"from": "pending", "to": "approved"},
            )
        if task:
            worker = "worker-1:4242"
            yield (
                created + timedelta(seconds=61),
                worker,
                "ticket.running",
                ticket_id,
                "approvals.ticket",
                str(ticket_id),
                {"from": "approved", "to": "running", "worker": worker, "attempt": 1},
            )
            yield (
                created + timedelta(seconds=62),
                worker,
                "hypervisor.task_started",
                ticket_id,
                "approvals.ticket",
                str(ticket_id),
                {"task_id": task},
            )
            if state in ("succeeded", "revoked"):
                yield (
                    created + timedelta(seconds=119),
                    worker,
                    "hypervisor.operation",
                    ticket_id,
                    "approvals.ticket",
                    str(ticket_id),
                    {"task_id": task, "result": "done", "already_done": False},
                )
                yield (
                    created + timedelta(seconds=120),
                    worker,
                    "ticket.succeeded",
                    ticket_id,
                    "approvals.ticket",
                    str(ticket_id),
                    {"from": "running", "to": "succeeded", "result": {"summary": "done"}},
                )
            elif state == "failed":
                yield (
                    created + timedelta(seconds=120),
                    worker,
                    "ticket.failed",
                    ticket_id,
                    "approvals.ticket",
                    str(ticket_id),
                    {"from": "running", "to": "failed", "error": "no space left"},
                )
        if state == "revoked":
            yield (
                created + timedelta(seconds=200),
                "sweeper",
                "ticket.revoked",
                ticket_id,
                "approvals.ticket",
                str(ticket_id),
                {"from": "succeeded", "to": "revoked"},
            )

    counted = sum(1 for plan in plans for _ in events(plan))
    padding = max(0, entries - counted)
    auditors = users["auditor"]

    def all_events():
        for i, plan in enumerate(plans):
            yield from events(plan)
            # Other activity (auditors reading) between tickets, to reach the target count.
            for k in range(padding * (i + 1) // len(plans) - padding * i // len(plans)):
                at = plan[1] + timedelta(seconds=250 + k)
                yield at, auditors[0], "auth.login", None, "auth.user", str(auditors[0].pk), {}

    say(f"copying ({counted} ticket events + {padding} other entries)")
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        with conn.cursor() as cur:
            # Triggers off for this fill: the chain head is set once at the end
            # rather than moved forward a million times.
            cur.execute("SET LOCAL session_replication_role = replica")
            copy_rows(
                cur,
                Ticket,
                "id, kind, state, connector_id, requester_id, justification, params, content_hash, "
                "required_approvals, approver_group_id, require_otp, zone, pending_expires_at, created_at, "
                "updated_at, operation_uuid, attempts, lease_owner, queued_at, started_at, finished_at, "
                "hypervisor_task_id, progress, result, error, access_expires_at, policy_id, policy_digest",
                ticket_rows,
            )
            copy_rows(
                cur,
                Approval,
                "id, ticket_id, approver_id, decision, comment, content_hash, created_at",
                approval_rows,
            )
            seq, prev_hash, last_at = 0, "", None
            with cur.copy(
                "COPY audit_auditentry (id, seq, created_at, actor_id, actor_name, action, ticket_id, object_type, "
                "object_id, source_ip, details, prev_hash, hash) FROM STDIN"
            ) as copy:
                for at, actor, action, ticket_id, object_type, object_id, details in all_events():
                    seq += 1
                    actor_id = actor.pk if not isinstance(actor, str) else None
                    actor_name = actor if isinstance(actor, str) else actor.username
                    source_ip = "10.0.0.7" if action == "auth.login" else None
                    fields = hashed_fields(
                        seq=seq,
                        created_at=at.isoformat(),
                        actor_id=actor_id,
                        actor_name=actor_name,
                        action=action,
                        ticket_id=ticket_id,
                        object_type=object_type,
                        object_id=object_id,
                        source_ip=source_ip,
                        details=details,
                        prev_hash=prev_hash,
                    )
                    digest = signer.digest(fields)
                    copy.write_row(
                        (
                            seq,
                            seq,
                            at,
                            actor_id,
                            actor_name,
                            action,
                            ticket_id,
                            object_type,
                            object_id,
                            source_ip,
                            canonical(details).decode(),
                            prev_hash,
                            digest,
                        )
                    )
                    prev_hash, last_at = digest, at
            cur.execute(
                "INSERT INTO audit_chainhead (id, seq, hash, created_at) VALUES (1, %s, %s, %s) ON CONFLICT (id) "
                "DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, created_at = EXCLUDED.created_at",
                [seq, prev_hash, last_at],
            )
            for table in ("approvals_ticket", "approvals_approval", "audit_auditentry"):
                # The table names are the constants just above.
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")  # noqa: S608
        conn.commit()
    say("vacuum analyze")
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_cookie(username: str) -> str:
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    return client.cookies["sessionid"].value


def query_counts(urls: dict[str, tuple[str, str]]) -> dict[str, int]:
    """SQL queries per page at full size (compare: tests/pages/test_query_counts.py)."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    counts = {}
    for name, (username, url) in urls.items():
        client = Client()
        client.force_login(get_user_model().objects.get(username=username))
        client.get(url)
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        counts[name] = len(ctx.captured_queries)
    return counts


def run_wrk(url: str, cookie: str | None, *, duration: int, connections: int, script: str) -> dict:
    args = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s", "-s", script, "--timeout", "10s"]
    if cookie:
        args += ["-H", f"Cookie: sessionid={cookie}"]
    output = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout  # noqa: S603
    found = re.search(r"BENCH p50=(\d+) p95=(\d+) p99=(\d+) requests=(\d+) errors=(\d+) non2xx=(\d+)", output)
    if not found:
        raise RuntimeError(f"wrk printed no figures:\n{output}")
    p50, p95, p99, requests, errors, non2xx = map(int, found.groups())
    if errors or non2xx:
        raise RuntimeError(f"{url}: {errors} socket errors, {non2xx} non-2xx answers:\n{output}")
    return {"p50_ms": p50 / 1000, "p95_ms": p95 / 1000, "p99_ms": p99 / 1000, "rps": requests / duration}


def median_of(figures: list[dict]) -> dict:
    return {key: statistics.median(f[key] for f in figures) for key in figures[0]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=20, help="seconds of wrk per view and page")
    parser.add_argument("--rounds", type=int, default=5, help="the duration is split into this many rounds")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--reuse", action="store_true", help="keep a database an earlier run filled")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")

    import django

    if not (args.reuse and database_filled(args.tickets, args.entries)):
        django.setup()
        started = time.monotonic()
        fill(args.tickets, args.entries)
        say(f"filled in {time.monotonic() - started:.0f} s")
    else:
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)  # the code may have moved on since the fill
        say("reusing the filled database")

    from django.core.cache import cache

    from approvals.models import Ticket
    from audit.models import AuditEntry

    cache.clear()
    detail = Ticket.objects.filter(state="succeeded", kind="vm_migrate", required_approvals=2).order_by("-id").first()
    pages = {
        "dashboard (approver)": ("bob", "/"),
        "dashboard (requester)": ("alice", "/"),
        "ticket list": ("bob", "/tickets/"),
        "ticket detail": ("bob", f"/tickets/{detail.pk}/"),
        "audit log": ("erin", "/audit/"),
    }
    counts = query_counts(pages)
    say(f"{Ticket.objects.count()} tickets, {AuditEntry.objects.count()} audit entries; queries per page: {counts}")

    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, check=True)  # noqa: S603
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(  # noqa: S603 - our own server
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "portal.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=os.environ.copy(),
        start_new_session=True,
    )
    results = []
    load_before = os.getloadavg()[0]
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        cookies = {username: session_cookie(username) for username, _ in pages.values()}
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(WRK_REPORT)
        measure = {
            "duration": max(1, args.duration // args.rounds),
            "connections": args.connections,
            "script": script.name,
        }
        # Warm every worker's connections and caches; these figures are dropped.
        for username, url in pages.values():
            run_wrk(base + url, cookies[username], duration=2, connections=args.connections, script=script.name)
        for name, (username, url) in pages.items():
            # Short rounds of trivial view, /healthz and page in turn on the same
            # server, the median of each: the machine's other work drifts less
            # within a round than across a whole run.
            rounds = [
                (
                    run_wrk(base + "/bench/trivial", cookies[username], **measure),
                    run_wrk(base + "/healthz", None, **measure),
                    run_wrk(base + url, cookies[username], **measure),
                )
                for _ in range(args.rounds)
            ]
            trivial, healthz, page = (median_of([r[i] for r in rounds]) for i in range(3))
            # Each round's page p95 over the same round's yardsticks, then the
            # median: a spike in one round (a checkpoint, other work) moves
            # one ratio, not the figure.
            page["÷ trivial"] = statistics.median(p["p95_ms"] / t["p95_ms"] for t, _, p in rounds)
            page["÷ healthz"] = statistics.median(p["p95_ms"] / h["p95_ms"] for _, h, p in rounds)
            results.append((name, page, trivial, healthz))
            say(
                f"{name}: p95 {page['p95_ms']:.1f} ms ({page['rps']:.0f} req/s); signed-in trivial view "
                f"p95 {trivial['p95_ms']:.1f} ms; /healthz p95 {healthz['p95_ms']:.1f} ms"
            )
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=20)

    print()
    print(
        f"{args.tickets:,} tickets, {args.entries:,}+ audit entries; wrk -c{args.connections}, "
        f"{args.rounds} rounds of {args.duration // args.rounds} s per view (medians; ratios per round); "
        f"gunicorn {args.workers} workers; {os.cpu_count()} CPUs; load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after"
    )
    print(
        "| page | queries | p50 ms | p95 ms | req/s | trivial p95 ms | p95 ÷ trivial | /healthz p95 ms "
        "| p95 ÷ healthz |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, page, trivial, healthz in results:
        print(
            f"| {name} | {counts[name]} | {page['p50_ms']:.1f} | {page['p95_ms']:.1f} | {page['rps']:.0f} | "
            f"{trivial['p95_ms']:.1f} | {page['÷ trivial']:.1f}× | {healthz['p95_ms']:.1f} | "
            f"{page['÷ healthz']:.1f}× |"
        )


if __name__ == "__main__":
    main()
