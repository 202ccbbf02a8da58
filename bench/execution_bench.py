"""Execution benchmark: how fast approved vm_migrate tickets drain through the
portal's Celery workers, beside a plain pyvmomi loop doing the same
relocations on the same vcsim.

    .venv/bin/python bench/execution_bench.py [--tickets 200] [--workers 1,2,4] [--relocate-ms 0] [--vms 0]

BENCH_REDIS (default redis://127.0.0.1:6379) names the Redis to use.

Needs PostgreSQL and Redis on localhost (as for the tests) and the built
lab (scripts/build-vcsim.sh). Uses its own database (twokey_bench_exec) and
Redis databases 9 and 10, and starts its own vcsim.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB = "twokey_bench_exec"
os.environ.update(
    DJANGO_SETTINGS_MODULE="portal.settings",
    DATABASE_URL=os.environ.get("BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DB}"),
    REDIS_URL=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379") + "/9",
    CACHE_URL=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379") + "/10",
    TWOKEY_LOCAL_KEYS="1",
    TWOKEY_DATA_DIR=str(ROOT / "var" / "bench"),
    LOG_LEVEL="WARNING",
    ALLOWED_HOSTS="testserver,localhost",
    TWOKEY_HTTPS="0",
)


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def recreate_database():
    import psycopg

    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--relocate-ms", type=int, default=0, help="vcsim delay per RelocateVM_Task")
    parser.add_argument("--vms", type=int, default=0, help="scale the lab up to this many VMs (vcsim -vms)")
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]

    recreate_database()
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from pyVim.task import WaitForTask
    from pyVmomi import vim
    from rest_framework.test import APIClient

    from accounts.services import token_issue
    from approvals.lab import label_lab
    from approvals.models import Policy, Ticket
    from approvals.roles import create_user
    from approvals.services.connectors import connector_register
    from audit.models import AuditEntry
    from connectors import credentials
    from tests.fixtures.workers import Worker

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    redis.Redis.from_url(os.environ["CACHE_URL"]).flushdb()
    delay = f"RelocateVM_Task={args.relocate_ms}" if args.relocate_ms else None
    from tests.fixtures.vcsim import VcsimProcess

    lab = VcsimProcess(method_delay=delay, vms=args.vms).start()
    try:
        users = {
            name: create_user(username=name, password="bench-" + os.urandom(8).hex(), roles=[role])
            for name, role in [("req", "requester"), ("ap1", "approver"), ("ap2", "approver")]
        }
        clients = {}
        for name, user in users.items():
            clients[name] = APIClient()
            clients[name].credentials(HTTP_AUTHORIZATION=f"Token {token_issue(user=user, actor_name='bench')}")
        connector = connector_register(
            name="lab",
            url=lab.url,
            username=lab.username,
            sealed_password=credentials.seal(lab.password),
            verify_tls=False,
        )
        label_lab(connector)
        Policy.objects.filter(kind="vm_migrate").update(required_approvals=2)

        si = lab.connect()
        content = si.RetrieveContent()

        def find(kind, name):
            view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
            try:
                return next(o for o in view.view if o.name == name)
            finally:
                view.Destroy()

        template = find(vim.VirtualMachine, "tpl-debian12")
        pool = find(vim.ClusterComputeResource, "dev").resourcePool
        hosts = {name: find(vim.HostSystem, name) for name in ("dev-esx-01", "dev-esx-02")}
        # The clones' disks on dev's own datastore: a move between dev's hosts
        # then stays in zone dev, storage and card included.
        datastore = find(vim.Datastore, "ds-dev")
        vms = []
        for i in range(args.tickets):
            location = vim.vm.RelocateSpec(pool=pool, host=hosts["dev-esx-01"], datastore=datastore)
            spec = vim.vm.CloneSpec(location=location)
            task = template.CloneVM_Task(folder=template.parent, name=f"bench-vm-{i:04d}", spec=spec)
            WaitForTask(task)
            vms.append(task.info.result)

        # The plain loop: the same relocations, one after another, no portal.
        started = time.perf_counter()
        singles = []
        for vm in vms:
            t = time.perf_counter()
            WaitForTask(vm.RelocateVM_Task(spec=vim.vm.RelocateSpec(host=hosts["dev-esx-02"])))
            singles.append(time.perf_counter() - t)
        raw_seconds = time.perf_counter() - started
        where = "dev-esx-02"
        print(
            f"raw pyvmomi loop: {len(vms)} relocations in {raw_seconds:.2f} s "
            f"(single relocation p50 {statistics.median(singles) * 1000:.1f} ms)"
        )

        def file_batch(target):
            # What a person does after a batch of changes: look at the hypervisor anew.
            assert clients["req"].get(f"/api/connectors/{connector.pk}/inventory/?refresh=1").status_code == 200
            ids = []
            for vm in vms:
                body = {
                    "kind": "vm_migrate",
                    "connector": connector.pk,
                    "justification": "bench",
                    # Tickets bind objects: the VM and host by managed-object id.
                    "params": {"vm": vm._moId, "target_host": hosts[target]._moId},
                }
                response = clients["req"].post("/api/tickets/", body, format="json")
                assert response.status_code == 201, response.content
                ids.append(response.json()["id"])
            return ids

        def approve(ids, pace=0.0):
            """Approve each twice; with `pace`, one ticket every `pace` seconds."""
            next_at = time.perf_counter()
            for ticket_id in ids:
                if pace:
                    time.sleep(max(0.0, next_at - time.perf_counter()))
                    next_at += pace
                for name in ("ap1", "ap2"):
                    response = clients[name].post(f"/api/tickets/{ticket_id}/approve/", {}, format="json")
                    assert response.status_code == 200, response.content

        def wait_done(ids, timeout=900):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                states = set(Ticket.objects.filter(pk__in=ids).values_list("state", flat=True))
                if states <= {"succeeded", "failed"}:
                    failed = Ticket.objects.filter(pk__in=ids, state="failed").count()
                    assert failed == 0, f"{failed} tickets failed"
                    return
                time.sleep(0.05)
            raise RuntimeError("drain timed out")

        env = {**os.environ, "LOG_LEVEL": "WARNING"}
        results = []
        running = []
        for count in worker_counts:
            target = "dev-esx-01" if where == "dev-esx-02" else "dev-esx-02"
            ids = file_batch(target)
            approve(ids)  # no worker runs yet: everything waits in the queue
            workers = [Worker(f"bench{count}-{i}", beat=False, env=env) for i in range(count)]
            running.extend(workers)
            started = time.perf_counter()
            for worker in workers:
                worker.launch(loglevel="WARNING")  # the drain is timed from here, start-up included
            wait_done(ids)
            drain = time.perf_counter() - started
            where = target

            # Second run: approvals arrive while the workers run, at the pace of
            # the plain loop (one per single relocation), so the latency is the
            # portal's and not that of a queue built by a burst.
            target = "dev-esx-01" if where == "dev-esx-02" else "dev-esx-02"
            ids = file_batch(target)
            approve(ids, pace=statistics.median(singles))
            wait_done(ids)
            where = target
            approved_at = dict(
                AuditEntry.objects.filter(ticket_id__in=ids, action="ticket.approved").values_list(
                    "ticket_id", "created_at"
                )
            )
            latencies = [
                (finished - approved_at[pk]).total_seconds()
                for pk, finished in Ticket.objects.filter(pk__in=ids).values_list("pk", "finished_at")
            ]
            for worker in workers:
                worker.stop()
            results.append((count, drain, statistics.median(latencies), percentile(latencies, 95)))
            print(
                f"{count} worker(s): drain {drain:.2f} s (portal/raw {drain / raw_seconds:.2f}); "
                f"approval-to-done p50 {statistics.median(latencies) * 1000:.0f} ms, "
                f"p95 {percentile(latencies, 95) * 1000:.0f} ms"
            )

        single = statistics.median(singles)
        print()
        print(
            f"| workers | drain (s) | raw loop (s) | portal/raw | approval-to-done p50 | p95 | p50 / single relocation ({single * 1000:.1f} ms) |"
        )
        print("|---|---|---|---|---|---|---|")
        for count, drain, p50, p95 in results:
            print(
                f"| {count} | {drain:.2f} | {raw_seconds:.2f} | {drain / raw_seconds:.2f} | {p50 * 1000:.0f} ms | "
                f"{p95 * 1000:.0f} ms | {p50 / single:.1f}× |"
            )
    finally:
        for worker in running:
            worker.stop()
        lab.close()


if __name__ == "__main__":
    main()
