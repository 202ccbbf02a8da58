"""Audit log benchmark: the filtered list, chain verification, CSV export and
appends, on a log of 10,000 entries beside one of 1,000,000; then, on the
large log, signed checkpoints and the witness: the witness catching up with
the whole log, verification against it (online and offline), and appends
while checkpoints are signed every second and the witness polls, against
appends with neither.

    .venv/bin/python bench/audit_bench.py --entries 1000000 [--small 10000] [--requests 60]

Needs PostgreSQL on localhost (as for the tests). Uses two databases of its
own, twokey_bench_small and twokey_bench (BENCH_DATABASE_URL names the
server), dropped and created afresh. Each log is generated in Python with the
portal's own hash chain and loaded with COPY.

Every measurement runs in a child process on one database, so its peak memory
is its own. The list is measured through a real HTTP server per database
(wsgiref, one request at a time), the requests to the two alternating, so a
busy neighbour on a shared machine slows both sizes alike.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from audit.chain import HASHED_FIELDS  # noqa: E402 - plain Python, no Django needed

SERVER = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/twokey_bench").rsplit("/", 1)[0]
DATABASES = {"small": "twokey_bench_small", "large": "twokey_bench"}
ENV = dict(
    DJANGO_SETTINGS_MODULE="portal.settings",
    REDIS_URL="redis://127.0.0.1:6379/9",
    CACHE_URL="redis://127.0.0.1:6379/10",
    TWOKEY_LOCAL_KEYS="1",
    TWOKEY_DATA_DIR=str(ROOT / "var" / "bench"),
    LOG_LEVEL="WARNING",
    ALLOWED_HOSTS="testserver,localhost,127.0.0.1",
    TWOKEY_HTTPS="0",
)

USERS = 200
ENTRIES_PER_TICKET = 50
START = datetime(2025, 1, 1, tzinfo=UTC)
STEP = timedelta(seconds=30)  # 1,000,000 entries span about a year
AUDITOR = "bench-auditor"
# (action, weight, what it is about)
ACTIONS = [
    ("ticket.submitted", 8, "ticket"),
    ("ticket.approval", 10, "ticket"),
    ("ticket.approved", 8, "ticket"),
    ("ticket.running", 8, "ticket"),
    ("hypervisor.task_started", 8, "ticket"),
    ("hypervisor.operation", 8, "ticket"),
    ("ticket.succeeded", 8, "ticket"),
    ("ticket.rejected", 1, "ticket"),
    ("auth.login", 20, "user"),
    ("auth.logout", 12, "user"),
    ("auth.login_failed", 3, "user"),
    ("config.zone.updated", 1, "config"),
    ("finding.raised", 1, "finding"),
]
# Every column of an entry, in the order the chain hashes them, then the hash.
COPY_COLUMNS = (*HASHED_FIELDS, "hash")


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# --------------------------------------------------------------------------
# Children: each runs against one database (DATABASE_URL)


def peak_rss_mb() -> float:
    """This process's peak RSS since exec (VmHWM). Not getrusage: Linux
    carries the parent's peak over into a child's ru_maxrss."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def prepare(entries: int) -> dict:
    """Migrate, add users, a connector and tickets, load `entries` entries;
    the list requests to measure on this log."""
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    world = prepare_world(entries // ENTRIES_PER_TICKET + 1)
    load(world, entries)
    return {"token": world["token"], "queries": list_queries(world, entries)}


def prepare_world(tickets_needed: int) -> dict:
    """Users, one connector and the tickets entries point at."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from accounts.services import token_issue
    from approvals.models import Ticket
    from approvals.roles import create_user, ensure_roles
    from connectors.models import Connector

    groups = ensure_roles()
    user_model = get_user_model()
    unusable = make_password(None)
    user_model.objects.bulk_create([user_model(username=f"user{i:03d}", password=unusable) for i in range(USERS)])
    users = list(user_model.objects.filter(username__startswith="user").order_by("id").values_list("id", "username"))
    auditor = create_user(username=AUDITOR, password="bench-" + "x" * 20, roles=["auditor"])
    token = token_issue(user=auditor, actor_name="bench")
    connector = Connector(name="bench", url="https://vcenter.invalid/sdk", username="svc")
    connector.set_password("not-a-real-password")
    connector.save()
    Ticket.objects.bulk_create(
        [
            Ticket(
                kind="vm_migrate",
                state="succeeded",
                connector=connector,
                requester_id=users[i % USERS][0],
                justification="bench",
                params={"vm": f"vm-{i}", "target_host": "esx-1"},
                content_hash="0" * 64,
                required_approvals=1,
                approver_group=groups["approver"],
                pending_expires_at=START,
            )
            for i in range(tickets_needed)
        ],
        batch_size=5000,
    )
    ticket_ids = list(Ticket.objects.order_by("id").values_list("id", flat=True))
    return {"users": users, "tickets": ticket_ids, "token": token}


def generate(world: dict, first_seq: int, count: int, prev_hash: str, after: datetime):
    """COPY rows for entries first_seq .. first_seq+count-1, chained with the
    portal's own encoding and key, STEP apart from `after` on (entry times
    never go backwards along the chain)."""
    from audit.chain import canonical
    from audit.writer import entry_fields, entry_hash

    rng = random.Random(first_seq)  # noqa: S311 - synthetic data, not secrets
    actions = [a for a, _, _ in ACTIONS]
    weights = [w for _, w, _ in ACTIONS]
    about = {a: kind for a, _, kind in ACTIONS}
    users, tickets = world["users"], world["tickets"]
    for seq in range(first_seq, first_seq + count):
        action = rng.choices(actions, weights)[0]
        created_at = after + STEP * (seq - first_seq + 1)
        actor_id, actor_name = users[rng.randrange(USERS)]
        ticket_id = source_ip = None
        object_type = object_id = ""
        details: dict = {}
        if about[action] == "ticket":
            ticket_id = tickets[min(len(tickets) - 1, seq // ENTRIES_PER_TICKET)]
            object_type, object_id = "approvals.ticket", str(ticket_id)
            details = (
                {"from": "approved", "to": "running", "comment": "looks fine"}
                if "ticket" in action
                else {"task_id": f"task-{seq}", "result": "moved VM 'web' to 'esx-1'"}
            )
            if action.startswith("hypervisor"):
                actor_id, actor_name = None, "worker:bench"
        elif about[action] == "user":
            object_type, object_id = "auth.user", str(actor_id)
            source_ip = f"10.{seq % 7}.{seq % 251}.{seq % 13 + 1}"
            if action == "auth.login_failed":
                actor_id = None
        elif about[action] == "finding":
            actor_id, actor_name = None, "drift"
            object_type, object_id = "audit.finding", str(seq)
            details = {"kind": "vm_moved", "observed": {"host": "esx-2"}, "expected": {"hosts": ["esx-1"]}}
        else:
            object_type, object_id = "approvals.zone", "1"
            details = {"name": "prod", "changes": {"trust_level": {"from": 20, "to": 30}}}
        details = json.loads(canonical(details))
        fields = entry_fields(
            seq=seq,
            created_at=created_at,
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
        digest = entry_hash(fields)
        yield (
            seq,
            created_at,
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
        prev_hash = digest


def load(world: dict, up_to: int) -> None:
    """Append generated entries after the current head with COPY, up to
    `up_to` entries in all, and move the head."""
    from django.db import connection

    from audit.models import ChainHead

    head = ChainHead.objects.get(id=1)
    first_seq, count = head.seq + 1, up_to - head.seq
    last = None
    started = time.perf_counter()
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY audit_auditentry ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
            for row in generate(world, first_seq, count, head.hash, head.created_at or START):
                copy.write_row(row)
                last = row
        # The head trigger lets the head move one entry at a time; this loader
        # moves it past the whole batch, as the owner of the table may.
        cursor.execute("ALTER TABLE audit_chainhead DISABLE TRIGGER USER")
        cursor.execute(
            "UPDATE audit_chainhead SET seq = %s, hash = %s, created_at = %s WHERE id = 1", [last[0], last[-1], last[1]]
        )
        cursor.execute("ALTER TABLE audit_chainhead ENABLE TRIGGER USER")
        cursor.execute("VACUUM ANALYZE audit_auditentry")
    print(f"  loaded {count:,} entries in {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)


def list_queries(world: dict, total: int) -> dict[str, str]:
    """The list requests measured, chosen so each matches a similar share of
    a small and a large log."""
    from audit.models import AuditEntry, ChainHead

    recent_ticket = world["tickets"][min(len(world["tickets"]) - 1, total // ENTRIES_PER_TICKET) - 2]
    last = ChainHead.objects.get(id=1).created_at
    middle = AuditEntry.objects.get(seq=total // 2).created_at
    queries = {
        "newest page, no filter": {},
        "actor": {"actor": "user042"},
        "action": {"action": "ticket.approval"},
        "ticket by reference": {"ticket": f"CHG-{recent_ticket:06d}"},
        "object": {"object_type": "approvals.ticket", "object_id": str(recent_ticket)},
        "since (last day)": {"since": (last - timedelta(days=1)).isoformat()},
        "until (middle of the log)": {"until": middle.isoformat()},
        "action + since (last day)": {"action": "auth.login", "since": (last - timedelta(days=1)).isoformat()},
        "actor + action": {"actor": "user042", "action": "ticket.approval"},
    }
    return {label: "&".join(f"{k}={quote(v)}" for k, v in params.items()) for label, params in queries.items()}


def serve() -> None:
    """A plain WSGI server on a free port, one request at a time; prints the
    port, then serves until killed."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from django.core.wsgi import get_wsgi_application

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=Quiet)
    print(json.dumps({"port": server.server_port}), flush=True)
    server.serve_forever()


def verify() -> dict:
    from audit.verify import verify_chain

    started = time.perf_counter()
    report = verify_chain()
    seconds = time.perf_counter() - started
    return {"ok": report.ok, "checked": report.checked, "seconds": seconds, "per_second": report.checked / seconds}


def export() -> dict:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from accounts.services import token_issue

    token = token_issue(user=get_user_model().objects.get(username=AUDITOR), actor_name="bench", revoke_others=False)
    started = time.perf_counter()
    response = Client(HTTP_AUTHORIZATION=f"Token {token}").get("/api/audit/export/?format=csv")
    assert response.status_code == 200
    size = lines = 0
    for chunk in response.streaming_content:
        size += len(chunk)
        lines += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    rows = lines - 1  # the header
    return {"rows": rows, "bytes": size, "seconds": seconds, "per_second": rows / seconds}


def append(n: int = 100) -> dict:
    from audit.writer import record

    record("bench.warm-up", actor_name="bench")
    timings = []
    for i in range(n):
        started = time.perf_counter()
        record("bench.append", actor_name="bench", details={"i": i})
        timings.append((time.perf_counter() - started) * 1000)
    return {"timings_ms": timings}


def checkpoint() -> dict:
    from audit.checkpoints import public_key, sign_checkpoint

    signed = sign_checkpoint()
    return {"seq": signed.seq if signed else None, "public_key": public_key()}


def signer() -> None:
    """Sign a checkpoint every second until killed (beat at a rate 60 times
    the default)."""
    from audit.checkpoints import sign_checkpoint

    print(json.dumps({"signing": True}), flush=True)
    while True:
        sign_checkpoint()
        time.sleep(1)


def export_json() -> dict:
    from audit.export import stream_json
    from audit.models import AuditEntry

    path = Path(os.environ["BENCH_EXPORT"])
    with path.open("w") as handle:
        for chunk in stream_json(AuditEntry.objects.all()):
            handle.write(chunk)
    return {"bytes": path.stat().st_size}


def child(mode: str, entries: int) -> None:
    import django

    django.setup()
    if mode == "serve":
        serve()
        return
    if mode == "signer":
        signer()
        return
    result = {
        "baseline": dict,
        "prepare": lambda: prepare(entries),
        "verify": verify,
        "export": export,
        "append": append,
        "checkpoint": checkpoint,
        "export_json": export_json,
    }[mode]()
    print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}), flush=True)


# --------------------------------------------------------------------------
# The parent: no Django, only children


def env_for(size: str) -> dict:
    return {**os.environ, **ENV, "DATABASE_URL": f"{SERVER}/{DATABASES[size]}"}


def run_child(size: str, mode: str, entries: int = 0, **env) -> dict:
    done = subprocess.run(  # noqa: S603 - this script
        [sys.executable, __file__, "--child", mode, "--entries", str(entries)],
        env={**env_for(size), **env},
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def recreate_databases() -> None:
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        for name in DATABASES.values():
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")


def get(port: int, path: str, token: str) -> tuple[float, bytes]:
    """One request: milliseconds until the whole body arrived, and the body."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers={"Authorization": f"Token {token}"})
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    conn.close()
    assert response.status == 200, (path, response.status, body[:300])
    return elapsed, body


def next_page(port: int, path: str, token: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers={"Authorization": f"Token {token}"})
    body = json.loads(conn.getresponse().read())
    conn.close()
    return body["next"].split(f":{port}", 1)[1]


def measure_lists(prepared: dict, requests: int) -> dict:
    servers, ports = {}, {}
    try:
        for size in DATABASES:
            servers[size] = subprocess.Popen(  # noqa: S603 - this script
                [sys.executable, __file__, "--child", "serve"], env=env_for(size), stdout=subprocess.PIPE, text=True
            )
            ports[size] = json.loads(servers[size].stdout.readline())["port"]
        paths = {
            size: {label: f"/api/audit/?{query}" for label, query in prepared[size]["queries"].items()}
            for size in DATABASES
        }
        for size in DATABASES:
            first = paths[size]["newest page, no filter"]
            paths[size]["second page (cursor)"] = next_page(ports[size], first, prepared[size]["token"])
        timings = {size: {label: [] for label in paths[size]} for size in DATABASES}
        rows = {size: {} for size in DATABASES}
        for i in range(requests + 5):
            for label in paths["small"]:
                for size in DATABASES:  # alternate: both sizes see the same neighbours
                    elapsed, body = get(ports[size], paths[size][label], prepared[size]["token"])
                    if i >= 5:  # warm-up
                        timings[size][label].append(elapsed)
                    else:
                        rows[size][label] = len(json.loads(body)["results"])
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(timeout=10)
    return {
        size: {
            label: {"p50_ms": statistics.median(t), "p95_ms": percentile(t, 95), "rows": rows[size][label]}
            for label, t in timings[size].items()
        }
        for size in DATABASES
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=60, help="timed requests per list query and size")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--append-rounds", type=int, default=5, help="alternating append batches with/without")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.entries)
        return

    started = time.perf_counter()
    sizes = {"small": args.small, "large": args.entries}
    recreate_databases()
    prepared = {}
    for size, entries in sizes.items():
        print(f"preparing {entries:,} entries", flush=True)
        prepared[size] = run_child(size, "prepare", entries)
    baseline = run_child("small", "baseline")["peak_rss_mb"]
    print("measuring the list", flush=True)
    lists = measure_lists(prepared, args.requests)
    figures = {size: {"entries": sizes[size], "list": lists[size]} for size in DATABASES}
    for size in DATABASES:
        print(f"verifying and exporting {sizes[size]:,} entries", flush=True)
        figures[size]["verify"] = run_child(size, "verify")
        figures[size]["export_csv"] = run_child(size, "export")
    appends = {size: [] for size in DATABASES}
    for _ in range(3):  # alternating batches, as for the list
        for size in DATABASES:
            appends[size] += run_child(size, "append")["timings_ms"]
    for size in DATABASES:
        figures[size]["append"] = {
            "median_ms": statistics.median(appends[size]),
            "p95_ms": percentile(appends[size], 95),
        }
    print("witnessing the large log", flush=True)
    figures["witness"] = measure_witness(prepared["large"]["token"], args.append_rounds)
    report(figures, baseline, args.requests)
    print(
        f"(whole run {time.perf_counter() - started:.0f}s; load average at the end "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    if args.json:
        args.json.write_text(json.dumps({"baseline_rss_mb": baseline, **figures}, indent=2))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Witness:
    """python -m audit.witness run against the bench's HTTP server."""

    def __init__(self, portal_port: int, token: str, data_dir: Path):
        self.port = free_port()
        self.proc = subprocess.Popen(  # noqa: S603 - the witness of this repository
            [
                *(sys.executable, "-m", "audit.witness", "run", "--portal", f"http://127.0.0.1:{portal_port}"),
                *("--data-dir", str(data_dir), "--listen", f"127.0.0.1:{self.port}", "--interval", "1"),
            ],
            cwd=ROOT,
            env={"PATH": os.environ.get("PATH", ""), "WITNESS_API_TOKEN": token, "LOG_LEVEL": "WARNING"},
        )

    def latest(self) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", "/latest")
        body = json.loads(conn.getresponse().read())
        conn.close()
        return body

    def wait_for(self, seq: int, timeout: float = 1800) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the witness exited"
            try:
                newest = self.latest()
                if newest["checkpoint"] and newest["checkpoint"]["seq"] >= seq:
                    return newest
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the witness did not reach #{seq}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def measure_witness(token: str, rounds: int) -> dict:
    """On the large log: the witness catching up from nothing, verification
    with it (verify_chain and the offline verifier), and appends with and
    without checkpoints being signed and witnessed."""
    import shutil

    data_dir = Path(ENV["TWOKEY_DATA_DIR"]) / "witness"
    shutil.rmtree(data_dir, ignore_errors=True)
    figures: dict = {}
    server = subprocess.Popen(  # noqa: S603 - this script
        [sys.executable, __file__, "--child", "serve"], env=env_for("large"), stdout=subprocess.PIPE, text=True
    )
    port = json.loads(server.stdout.readline())["port"]
    witness = None
    try:
        signed = run_child("large", "checkpoint")
        witness = Witness(port, token, data_dir)
        started = time.perf_counter()
        newest = witness.wait_for(signed["seq"])
        figures["catch_up"] = {"entries": signed["seq"], "seconds": time.perf_counter() - started}
        figures["store_mb"] = sum(path.stat().st_size for path in data_dir.glob("witness.sqlite3*")) / 1e6
        env = {"WITNESS_URL": f"http://127.0.0.1:{witness.port}", "WITNESS_PUBLIC_KEY": newest["witness_public_key"]}
        figures["verify"] = run_child("large", "verify", **env)
        figures["offline"] = measure_offline(witness, signed["public_key"], newest["witness_public_key"])
        # Appends: batches alternate between neither running and both
        # (checkpoints signed every second, the witness polling every second).
        plain, loaded = [], []
        for _ in range(rounds):
            witness.stop()
            witness = None
            plain += run_child("large", "append")["timings_ms"]
            witness = Witness(port, token, data_dir)
            signing = subprocess.Popen(  # noqa: S603 - this script
                [sys.executable, __file__, "--child", "signer"], env=env_for("large"), stdout=subprocess.PIPE, text=True
            )
            signing.stdout.readline()
            try:
                loaded += run_child("large", "append")["timings_ms"]
            finally:
                signing.terminate()
                signing.wait(timeout=10)
        witness.wait_for(run_child("large", "checkpoint")["seq"] or 0)
        figures["append"] = {
            "without": {"median_ms": statistics.median(plain), "p95_ms": percentile(plain, 95)},
            "with": {"median_ms": statistics.median(loaded), "p95_ms": percentile(loaded, 95)},
        }
    finally:
        if witness is not None:
            witness.stop()
        server.terminate()
        server.wait(timeout=10)
    return figures


def measure_offline(witness: Witness, portal_key: str, witness_key: str) -> dict:
    """The export and the witness's file checked with the public keys alone."""
    export = Path(ENV["TWOKEY_DATA_DIR"]) / "bench-export.json"
    witnessed = Path(ENV["TWOKEY_DATA_DIR"]) / "bench-witnessed.jsonl"
    run_child("large", "export_json", BENCH_EXPORT=str(export))
    conn = http.client.HTTPConnection("127.0.0.1", witness.port, timeout=300)
    conn.request("GET", "/export")
    with witnessed.open("wb") as handle:
        response = conn.getresponse()
        while chunk := response.read(1 << 20):
            handle.write(chunk)
    conn.close()
    command = [
        *("/usr/bin/time", "-f", "%M", sys.executable, "-m", "audit.verify_export", str(export)),
        *("--witness", str(witnessed), f"--witness-public-key={witness_key}", f"--portal-public-key={portal_key}"),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={"PATH": os.environ["PATH"]})  # noqa: S603
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stdout + done.stderr
    entries = int(done.stdout.split()[1])
    result = {
        "entries": entries,
        "seconds": seconds,
        "per_second": entries / seconds,
        "peak_rss_mb": int(done.stderr.strip().splitlines()[-1]) / 1024,
        "witness_file_mb": witnessed.stat().st_size / 1e6,
    }
    export.unlink()
    witnessed.unlink()
    return result


def report(figures: dict, baseline_rss: float, requests: int) -> None:
    a, b = figures["small"], figures["large"]
    print()
    print(f"Audit list over HTTP, {requests} requests per query and size, interleaved; p95 in ms (rows on the page):")
    print(f"  {'request':<28} {format(a['entries'], ','):>14} {format(b['entries'], ','):>14}  ratio")
    worst = 0.0
    for label in a["list"]:
        x, y = a["list"][label], b["list"][label]
        ratio = y["p95_ms"] / x["p95_ms"]
        worst = max(worst, ratio)
        print(f"  {label:<28} {x['p95_ms']:>8.1f} ({x['rows']:>2}) {y['p95_ms']:>8.1f} ({y['rows']:>2})  {ratio:.2f}x")
    print(f"  worst ratio {worst:.2f}x (target <= 1.5x)")
    for f in (a, b):
        v, e, p = f["verify"], f["export_csv"], f["append"]
        print(f"At {f['entries']:,} entries:")
        print(
            f"  verify: {v['checked']:,} entries in {v['seconds']:.1f}s = {v['per_second']:,.0f}/s, "
            f"peak RSS {v['peak_rss_mb']:.0f} MB (ok={v['ok']})"
        )
        print(
            f"  export CSV: {e['rows']:,} rows, {e['bytes'] / 1e6:.0f} MB in {e['seconds']:.1f}s = "
            f"{e['per_second']:,.0f} rows/s, peak RSS {e['peak_rss_mb']:.0f} MB"
        )
        print(f"  append (record(), one transaction each): median {p['median_ms']:.2f} ms, p95 {p['p95_ms']:.2f} ms")
    print(f"(a child that only loads Django peaks at {baseline_rss:.0f} MB RSS)")
    w = figures["witness"]
    print(f"Witness, at {b['entries']:,} entries:")
    print(
        f"  catching up from nothing: {w['catch_up']['entries']:,} entries in {w['catch_up']['seconds']:.1f}s; "
        f"its store {w['store_mb']:.0f} MB"
    )
    v, o = w["verify"], w["offline"]
    print(
        f"  verify with the witness: {v['checked']:,} entries in {v['seconds']:.1f}s = {v['per_second']:,.0f}/s, "
        f"peak RSS {v['peak_rss_mb']:.0f} MB (ok={v['ok']})"
    )
    print(
        f"  offline, public keys only (export + witness file of {o['witness_file_mb']:.0f} MB): {o['entries']:,} "
        f"entries in {o['seconds']:.1f}s = {o['per_second']:,.0f}/s, peak RSS {o['peak_rss_mb']:.0f} MB"
    )
    a = w["append"]
    ratio = a["with"]["p95_ms"] / a["without"]["p95_ms"]
    print(
        f"  append p95 without {a['without']['p95_ms']:.2f} ms, with checkpoints every second and the witness "
        f"polling {a['with']['p95_ms']:.2f} ms: {ratio:.2f}x (target <= 1.1x); medians "
        f"{a['without']['median_ms']:.2f} / {a['with']['median_ms']:.2f} ms"
    )


if __name__ == "__main__":
    main()
