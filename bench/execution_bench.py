"""Execution benchmark: how fast approved vm_migrate tickets drain through the
portal's Celery workers, beside a plain pyvmomi loop doing the same
relocations on the same vcsim.

    .venv/bin/python bench/execution_bench.py [--tickets 200] [--workers 1,2,4] [--relocate-ms 0] [--vms 0]
    .venv/bin/python bench/execution_bench.py --tickets 62 --profile 62 [--vms N]

Per worker count it reports the drain (with the workers' start, and from
the first claim), the worker's time per ticket without the hypervisor's own
task (the execute task's run time, and the whole turn of a worker process
from one ticket's end to the next, other tasks included), the workers' CPU
per ticket and the approval-to-done latency. --profile runs that many
tickets in this process instead, as a worker would: time per step, the SQL
statements and SOAP calls of one ticket, and cProfile's view (sorted by
BENCH_PROFILE_SORT, default cumulative; BENCH_PROFILE_CLOCK=cpu counts CPU
time instead of the wall clock; BENCH_SHOW_SQL=1 lists the SQL;
BENCH_PROFILE_DUMP=FILE writes the profile there for pstats).

BENCH_DATABASE_URL names the PostgreSQL database (default
postgres://postgres@127.0.0.1:5432/twokey_bench_exec; it is dropped and
created again). BENCH_REDIS (default redis://127.0.0.1:6379) names the Redis to use; with a
database number (redis://127.0.0.1:6379/14) the broker and the cache share
that one database, otherwise they use databases 9 and 10.

Needs PostgreSQL and Redis on localhost (as for the tests) and the built
lab (scripts/build-vcsim.sh). Starts its own vcsim.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/twokey_bench_exec")
DB = DATABASE_URL.rsplit("/", 1)[1]


def _redis_urls(url: str) -> tuple[str, str]:
    """(broker, cache): a URL naming a database number serves both (their
    keys do not meet); without one, databases 9 and 10."""
    if url.rstrip("/").rsplit("/", 1)[-1].isdigit():
        return url, url
    return url.rstrip("/") + "/9", url.rstrip("/") + "/10"


BROKER_URL, CACHE_URL = _redis_urls(os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379"))
os.environ.update(
    DJANGO_SETTINGS_MODULE="portal.settings",
    DATABASE_URL=DATABASE_URL,
    REDIS_URL=BROKER_URL,
    CACHE_URL=CACHE_URL,
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


def worker_time(ids, task_seconds, workers):
    """Per ticket of a drained batch, the worker's time on it beside the
    hypervisor's own task (its duration as vCenter reports it), two ways:

    - task: the execute_ticket task's own run time, as Celery logs it
      (claim, checks, calls, audit entries; the task found by its id,
      which the claim's audit entry carries in the worker's name);
    - turn: in each worker process (the queue never empty) from the end of
      its previous ticket to the end of this one, so Celery's fetch and
      acknowledgement and the other tasks a ticket causes (its
      notifications, the audit checkpoint) count too. The first ticket of
      each process has no start and is left out.

    Also the drain's span, first claim to last done."""
    from approvals.models import Ticket
    from audit.models import AuditEntry

    ran = {}
    for worker in workers:
        ran.update((task, float(s)) for task, s in EXECUTE_LINE.findall(worker.output()))
    claims = AuditEntry.objects.filter(ticket_id__in=ids, action="ticket.running").values_list(
        "ticket_id", "created_at", "details"
    )
    process, task_of = {}, {}
    first_claim = None
    for pk, at, details in claims:
        _host, process[pk], task_of[pk] = details["worker"].rsplit(":", 2)
        first_claim = at if first_claim is None else min(first_claim, at)
    done = {
        pk: (finished, task)
        for pk, finished, task in Ticket.objects.filter(pk__in=ids).values_list(
            "pk", "finished_at", "hypervisor_task_id"
        )
    }
    own = {pk: (task_seconds(task) if task else 0.0) for pk, (_f, task) in done.items()}
    known = sum(v is not None for v in own.values())
    by_process = {}
    for pk, (finished, _task) in done.items():
        by_process.setdefault(process[pk], []).append((finished, pk))
    turns = []
    for finishes in by_process.values():
        finishes.sort()
        for (before, _), (finished, pk) in zip(finishes, finishes[1:], strict=False):
            turns.append((finished - before).total_seconds() - (own[pk] or 0.0))
    tasks = [ran[task_of[pk]] - (own[pk] or 0.0) for pk in done if task_of.get(pk) in ran]
    span = (max(f for f, _ in done.values()) - first_claim).total_seconds()
    return tasks, turns, span, f"{known} of {len(done)} task durations from vCenter"


def cpu_seconds(workers):
    """CPU seconds (user + system) the workers' processes, pool children
    included, have used so far, from /proc."""
    groups = {w.proc.pid for w in workers}
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) in groups:  # the process group: a worker and its pool
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


TASK_LINE = re.compile(r"Task ([\w.]+)\[[^]]+\] succeeded in ([\d.]+)s")
EXECUTE_LINE = re.compile(r"Task approvals\.tasks\.execute_ticket\[([^]]+)\] succeeded in ([\d.]+)s")


def task_times(workers, tickets):
    """Seconds per ticket the workers spent in each kind of task (as Celery
    logs them at INFO), so far."""
    spent = {}
    for worker in workers:
        for name, seconds in TASK_LINE.findall(worker.output()):
            count, total = spent.get(name, (0, 0.0))
            spent[name] = (count + 1, total + float(seconds))
    return "tasks run: " + "; ".join(
        f"{name.rsplit('.', 1)[-1]} ×{count}, {total / tickets * 1000:.1f} ms a ticket"
        for name, (count, total) in sorted(spent.items())
    )


SPANS = [
    ("approvals.services.execution", "freeze_gate"),
    ("approvals.services.execution", "conflict_gate"),
    ("approvals.services.execution", "transition"),
    ("approvals.services.execution", "live_index"),
    ("approvals.services.execution", "operation_done"),
    ("approvals.services.execution", "recheck"),
    ("approvals.services.execution", "approvals_problem"),
    ("approvals.services.execution", "history_problem"),
    ("approvals.services.execution", "check_submission"),
    ("approvals.services.execution", "perform"),
    ("approvals.services.execution", "_succeed"),
    ("approvals.services.execution", "_still_ours"),
    ("approvals.services.execution", "record"),
    ("approvals.services.transitions", "record"),
    ("connectors.vsphere", "_collect"),
]


@contextlib.contextmanager
def spans():
    """Seconds spent in each of SPANS, summed, while the block runs (the
    functions wrapped where their callers look them up)."""
    import importlib

    spent = {}
    saved = []
    for module_name, name in SPANS:
        module = importlib.import_module(module_name)
        original = getattr(module, name)
        label = f"{module_name.rsplit('.', 1)[-1]}.{name}"
        spent[label] = 0.0

        def timed(*args, _original=original, _label=label, **kwargs):
            t = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_label] += time.perf_counter() - t

        saved.append((module, name, original))
        setattr(module, name, timed)
    try:
        yield spent
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def profile_in_process(ids):
    """Execute approved tickets one after another in this process, as one
    worker would (no Celery): half of them timed bare, the other half under
    cProfile, the SQL statements and SOAP calls of one counted; print the
    time per ticket and where it goes."""
    import cProfile
    import pstats
    from collections import Counter

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from pyVmomi import SoapAdapter

    from approvals.services.execution import ticket_execute

    def execute(pk):
        outcome = ticket_execute(ticket_id=pk, worker="profile:0")
        assert outcome == "succeeded", outcome

    execute(ids[0])  # the first log walk and the login
    soap = Counter()
    invoke = SoapAdapter.SoapStubAdapter.InvokeMethod

    def counted(self, mo, info, args, outerStub=None):  # noqa: N803 - pyVmomi's own names
        soap[info.wsdlName] += 1
        return invoke(self, mo, info, args, outerStub)

    SoapAdapter.SoapStubAdapter.InvokeMethod = counted
    try:
        with CaptureQueriesContext(connection) as queries:
            execute(ids[1])
    finally:
        SoapAdapter.SoapStubAdapter.InvokeMethod = invoke
    kinds = Counter(q["sql"].split()[0].upper() for q in queries.captured_queries)
    if os.environ.get("BENCH_SHOW_SQL"):
        for q in queries.captured_queries:
            print("  SQL", q["sql"][:150])
    print(f"one ticket: {len(queries.captured_queries)} SQL statements {dict(kinds)}; SOAP calls {dict(soap)}")
    rest = ids[2:]
    bare, profiled = rest[: len(rest) // 2], rest[len(rest) // 2 :]
    times, cpu = [], []
    with spans() as spent:
        for pk in bare:
            t, c = time.perf_counter(), time.process_time()
            execute(pk)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    print(
        f"in-process: {len(times)} tickets, p50 {statistics.median(times) * 1000:.1f} ms, "
        f"p95 {percentile(times, 95) * 1000:.1f} ms (the hypervisor task included), this process's CPU p50 "
        f"{statistics.median(cpu) * 1000:.1f} ms; per ticket, by step (nested):"
    )
    for name, seconds in spent.items():
        print(f"  {name:40} {seconds / len(bare) * 1000:6.1f} ms")
    # BENCH_PROFILE_CLOCK=cpu: this process's CPU time instead of the wall clock.
    profile = (
        cProfile.Profile(time.process_time) if os.environ.get("BENCH_PROFILE_CLOCK") == "cpu" else cProfile.Profile()
    )
    for pk in profiled:
        profile.enable()
        execute(pk)
        profile.disable()
    if os.environ.get("BENCH_PROFILE_DUMP"):  # a file for pstats, snakeviz, ...
        profile.dump_stats(os.environ["BENCH_PROFILE_DUMP"])
    pstats.Stats(profile).sort_stats(os.environ.get("BENCH_PROFILE_SORT", "cumulative")).print_stats(60)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--relocate-ms", type=int, default=0, help="vcsim delay per RelocateVM_Task")
    parser.add_argument("--vms", type=int, default=0, help="scale the lab up to this many VMs (vcsim -vms)")
    parser.add_argument(
        "--drain-only", action="store_true", help="per worker count, the drain only (no paced second batch)"
    )
    parser.add_argument(
        "--profile", type=int, default=0, help="run this many tickets in this process under cProfile first"
    )
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
    from tests.fixtures.workers import EXECUTION_QUEUE, PORTAL_QUEUE, Worker

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    redis.Redis.from_url(os.environ["CACHE_URL"]).flushdb()
    delay = f"RelocateVM_Task={args.relocate_ms}" if args.relocate_ms else None
    from tests.fixtures.vcsim import VcsimProcess

    lab = VcsimProcess(method_delay=delay, vms=args.vms).start()
    running = []
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

        def task_seconds(task_id):
            """The hypervisor task's own duration as vCenter reports it
            (completeTime - startTime), or None when it no longer knows it."""
            try:
                info = vim.Task(task_id, stub=si._stub).info
            except vim.fault.ManagedObjectNotFound:
                return None
            if info.startTime is None or info.completeTime is None:
                return None
            return (info.completeTime - info.startTime).total_seconds()

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

        if args.profile:
            target = "dev-esx-01" if where == "dev-esx-02" else "dev-esx-02"
            ids = file_batch(target)[: args.profile]
            approve(ids)
            profile_in_process(ids)
            return

        # As the Procfile runs them: `count` workers on the execution queue and
        # one notify process (no CREDENTIALS_KEY) on the portal queue for the
        # notifications, chat and checkpoints the tickets cause. Notify runs
        # all along, as it does in a deployment: it sends the approvals'
        # notifications while the approvals come in, and the drain is timed
        # from the workers' start, with notify sending the successes'
        # notifications and the checkpoints beside them on the same cores.
        env = {**os.environ, "LOG_LEVEL": "WARNING", "TWOKEY_SERVICE": "worker"}
        notify_env = {k: v for k, v in {**env, "TWOKEY_SERVICE": "notify"}.items() if k != "CREDENTIALS_KEY"}
        broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        results = []
        for count in worker_counts:
            notify = Worker(f"bench{count}-notify", beat=False, env=notify_env, queues=(PORTAL_QUEUE,))
            running.append(notify)
            notify.start()
            target = "dev-esx-01" if where == "dev-esx-02" else "dev-esx-02"
            ids = file_batch(target)
            approve(ids)  # no worker runs yet: the executions wait in their queue
            while broker.llen(PORTAL_QUEUE):  # the approvals' notifications sent
                time.sleep(0.1)
            before_drain = Counter(name for name, _s in TASK_LINE.findall(notify.output()))
            workers = [
                Worker(f"bench{count}-{i}", beat=False, env=env, queues=(EXECUTION_QUEUE,)) for i in range(count)
            ]
            running.extend(workers)
            started = time.perf_counter()
            for worker in workers:
                worker.launch(loglevel="INFO")  # the drain is timed from here, start-up included
            wait_done(ids)
            drain = time.perf_counter() - started
            where = target
            tasks, turns, span, tasks_from = worker_time(ids, task_seconds, workers)
            if args.drain_only:
                for worker in [*workers, notify]:
                    worker.stop()
                results.append((count, drain, span, tasks, turns, None, None))
                print(
                    f"{count} worker(s): drain {drain:.2f} s with the workers' start, {span:.2f} s from the first "
                    f"claim (portal/plain {span / raw_seconds:.2f}); execute task p50 "
                    f"{statistics.median(tasks) * 1000:.1f} ms, turn p50 {statistics.median(turns) * 1000:.1f} ms "
                    f"({tasks_from})"
                )
                print("workers'", task_times(workers, len(ids)))
                print("notify's (approvals included)", task_times([notify], len(ids)))
                during = Counter(name for name, _s in TASK_LINE.findall(notify.output())) - before_drain
                print("notify's tasks during the drain:", dict(during))
                continue

            # Second run: approvals arrive while the workers run, at the pace of
            # the plain loop (one per single relocation), so the latency is the
            # portal's and not that of a queue built by a burst.
            target = "dev-esx-01" if where == "dev-esx-02" else "dev-esx-02"
            ids = file_batch(target)
            cpu_before = cpu_seconds(workers)
            approve(ids, pace=statistics.median(singles))
            wait_done(ids)
            cpu = (cpu_seconds(workers) - cpu_before) / len(ids)
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
            for worker in [*workers, notify]:
                worker.stop()
            results.append((count, drain, span, tasks, turns, latencies, cpu))
            print(
                f"{count} worker(s): drain {drain:.2f} s with the workers' start, {span:.2f} s from the first "
                f"claim (portal/plain {span / raw_seconds:.2f}); worker time per ticket without the hypervisor's "
                f"task ({tasks_from}): execute task p50 {statistics.median(tasks) * 1000:.1f} ms, "
                f"p95 {percentile(tasks, 95) * 1000:.1f} ms; turn p50 {statistics.median(turns) * 1000:.1f} ms, "
                f"p95 {percentile(turns, 95) * 1000:.1f} ms; worker CPU per ticket (paced run, every task "
                f"included) {cpu * 1000:.1f} ms; "
                f"approval-to-done p50 {statistics.median(latencies) * 1000:.0f} ms, "
                f"p95 {percentile(latencies, 95) * 1000:.0f} ms"
            )
            print("workers'", task_times(workers, 2 * len(ids)))
            print("notify's", task_times([notify], 2 * len(ids)))

        single = statistics.median(singles)
        print()
        print(
            "| VMs | workers | drain with start (s) | drain from first claim (s) | plain loop (s) | portal/plain "
            "| execute task ms/ticket p50 | p95 | turn ms/ticket p50 | p95 | worker CPU ms/ticket "
            f"| approval-to-done p50 | p95 | p50 / single relocation ({single * 1000:.1f} ms) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for count, drain, span, tasks, turns, latencies, cpu in results:
            paced = "| n/a | n/a | n/a | n/a |"
            if latencies is not None:
                p50 = statistics.median(latencies)
                paced = (
                    f"| {cpu * 1000:.1f} | {p50 * 1000:.0f} ms | {percentile(latencies, 95) * 1000:.0f} ms "
                    f"| {p50 / single:.1f}× |"
                )
            print(
                f"| {args.vms or 'default'} | {count} | {drain:.2f} | {span:.2f} | {raw_seconds:.2f} | "
                f"{span / raw_seconds:.2f} | {statistics.median(tasks) * 1000:.1f} | "
                f"{percentile(tasks, 95) * 1000:.1f} | {statistics.median(turns) * 1000:.1f} | "
                f"{percentile(turns, 95) * 1000:.1f} " + paced
            )
    finally:
        for worker in running:
            worker.stop()
        lab.close()


if __name__ == "__main__":
    main()
