"""Approved tickets reach the hypervisor through real Celery workers, once,
and every crash ends in a true state. Real PostgreSQL, Redis, vcsim."""

import re
import time

import pytest
import redis
from django.conf import settings
from django.db import connection
from pyVmomi import vim

from approvals import tasks
from approvals.models import Ticket
from audit.models import AuditEntry, Checkpoint
from tests.approvals.helpers import ADMIN_ACCESS, DEV_TO_PROD, VM_CREATE, file_ticket, migrate_within_zone, wait_for
from tests.conftest import register_lab
from tests.fixtures.vcsim import start_vcsim
from tests.fixtures.workers import EXECUTION_QUEUE, PORTAL_QUEUE

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def approve_all(api, ticket, *approvers):
    for user in approvers:
        response = api(user).post(f"/api/tickets/{ticket['id']}/approve/", {}, format="json")
        assert response.status_code == 200, response.content


def find_vms(si, name):
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return [vm for vm in view.view if vm.name == name]
    finally:
        view.Destroy()


def permissions_on(si, entity_name, principal):
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.ManagedEntity], True)
    entity = next(e for e in view.view if e.name == entity_name)
    view.Destroy()
    perms = content.authorizationManager.RetrieveEntityPermissions(entity=entity, inherited=False)
    return [p for p in perms if p.principal.lower() == principal.lower()]


@pytest.fixture
def check(fresh_vcsim):
    """A separate pyvmomi session on the test's own lab, to read results back."""
    return fresh_vcsim.connect()


def test_vm_create_end_to_end(api, own_lab, requester, approver, workers, check):
    workers(1)
    ticket = file_ticket(api(requester), own_lab, "vm_create", VM_CREATE)
    approve_all(api, ticket, approver)
    done = wait_for(ticket["id"], "succeeded", "failed")
    assert done.state == "succeeded", done.error
    [vm] = find_vms(check, VM_CREATE["name"])
    assert vm.config.instanceUuid == str(done.operation_uuid)
    assert vm.runtime.host.name == "prod-esx-01"
    assert vm.config.hardware.numCPU == 2 and vm.config.hardware.memoryMB == 2048
    assert done.hypervisor_task_id.startswith("task-")
    actions = list(AuditEntry.objects.filter(ticket_id=ticket["id"]).order_by("seq").values_list("action", flat=True))
    assert actions == [
        "ticket.submitted",
        "ticket.approval",
        "ticket.approved",
        "ticket.running",
        "guest_password.issued",
        "hypervisor.task_started",
        "hypervisor.operation",
        "ticket.succeeded",
    ]


def test_vm_migrate_end_to_end(api, own_lab, requester, approver, approver2, workers, check):
    workers(1)
    ticket = file_ticket(api(requester), own_lab, "vm_migrate", {**DEV_TO_PROD, "target_host": "prod-esx-02"})
    assert ticket["required_approvals"] == 2
    approve_all(api, ticket, approver, approver2)
    done = wait_for(ticket["id"], "succeeded", "failed")
    assert done.state == "succeeded", done.error
    [vm] = find_vms(check, "dev-app-01")
    assert vm.runtime.host.name == "prod-esx-02"


def test_notify_does_the_portal_work_the_worker_no_longer_takes_turns_for(
    api, own_lab, requester, approver, approver2, workers, check, tmp_path
):
    """As the Procfile runs them: the worker consumes only the execution
    queue, notify (TWOKEY_SERVICE=notify, no CREDENTIALS_KEY) only the
    portal queue: the mails and the checkpoint of a ticket come from notify."""
    outbox = tmp_path / "mail"
    outbox.mkdir()
    mail = {"EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend", "EMAIL_FILE_PATH": str(outbox)}
    [worker] = workers(1, beat=False, env=mail, queues=(EXECUTION_QUEUE,))
    [notify] = workers(1, beat=False, env={**mail, "TWOKEY_SERVICE": "notify"}, queues=(PORTAL_QUEUE,))
    ticket = file_ticket(api(requester), own_lab, "vm_migrate", {**DEV_TO_PROD, "target_host": "prod-esx-02"})
    approve_all(api, ticket, approver, approver2)
    done = wait_for(ticket["id"], "succeeded", "failed")
    assert done.state == "succeeded", done.error
    succeeded = AuditEntry.objects.get(ticket_id=ticket["id"], action="ticket.succeeded")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (
        Checkpoint.objects.filter(seq__gte=succeeded.seq).exists()
        and any(ticket["ref"] in p.read_text() and requester.email in p.read_text() for p in outbox.glob("*.log"))
    ):
        time.sleep(0.2)
    assert Checkpoint.objects.filter(seq__gte=succeeded.seq).exists()
    assert any(requester.email in p.read_text() for p in outbox.glob("*.log"))

    def ran(process) -> set[str]:  # "Task <name>[<id>] received" lines, not the start-up list of tasks
        return set(re.findall(r"Task ([\w.]+)\[[^\]]+\] received", process.output()))

    assert ran(worker) == {"approvals.tasks.execute_ticket"}
    assert {"approvals.tasks.send_notification", "audit.tasks.sign_checkpoint"} <= ran(notify)
    assert "approvals.tasks.execute_ticket" not in ran(notify)


def test_admin_access_granted_then_expires_on_time(api, own_lab, requester, approver, approver2, workers, check):
    workers(1)
    # Worker "minutes" last one second here (ACCESS_MINUTE_SECONDS).
    ticket = file_ticket(api(requester), own_lab, "admin_access", {**ADMIN_ACCESS, "duration_minutes": 4})
    approve_all(api, ticket, approver, approver2)
    done = wait_for(ticket["id"], "succeeded", "failed")
    assert done.state == "succeeded", done.error
    [granted] = permissions_on(check, "prod-web-01", "LAB\\alice")
    roles = {r.roleId: r.name for r in check.RetrieveContent().authorizationManager.roleList}
    assert roles[granted.roleId] == ADMIN_ACCESS["role"]
    revoked = wait_for(ticket["id"], "revoked", timeout=20)
    assert permissions_on(check, "prod-web-01", "LAB\\alice") == []
    # Removed within a sweep interval (2 s) and a task of the expiry.
    assert (revoked.updated_at - done.access_expires_at).total_seconds() < 5


def test_revoke_removes_access_at_once(api, own_lab, requester, approver, approver2, workers, check):
    workers(1)
    ticket = file_ticket(api(requester), own_lab, "admin_access", {**ADMIN_ACCESS, "duration_minutes": 400})
    approve_all(api, ticket, approver, approver2)
    assert wait_for(ticket["id"], "succeeded", "failed").state == "succeeded"
    assert len(permissions_on(check, "prod-web-01", "LAB\\alice")) == 1
    asked = time.monotonic()
    assert api(requester).post(f"/api/tickets/{ticket['id']}/revoke/").status_code == 202
    wait_for(ticket["id"], "revoked", timeout=10)
    assert time.monotonic() - asked < 5
    assert permissions_on(check, "prod-web-01", "LAB\\alice") == []


def test_same_task_delivered_twice_has_one_effect(api, own_lab, requester, approver, workers, check):
    ticket = file_ticket(api(requester), own_lab, "vm_create", VM_CREATE)
    approve_all(api, ticket, approver)  # queued once by the approval
    tasks.execute_ticket.delay(ticket["id"])  # and twice more, by hand
    tasks.execute_ticket.delay(ticket["id"])
    workers(2, beat=False)
    done = wait_for(ticket["id"], "succeeded", "failed")
    time.sleep(2)  # let the duplicates run to completion
    assert done.state == "succeeded"
    assert len(find_vms(check, VM_CREATE["name"])) == 1
    assert Ticket.objects.get(pk=ticket["id"]).attempts == 1
    assert AuditEntry.objects.filter(ticket_id=ticket["id"], action="ticket.running").count() == 1


def test_redis_flushed_after_approval_the_sweeper_requeues(api, own_lab, requester, approver, workers, check):
    ticket = file_ticket(api(requester), own_lab, "vm_create", VM_CREATE)
    approve_all(api, ticket, approver)
    # Redis keeps nothing on disk: a restart loses every queued message.
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    workers(1)
    done = wait_for(ticket["id"], "succeeded", "failed", timeout=60)
    assert done.state == "succeeded", done.error
    assert len(find_vms(check, VM_CREATE["name"])) == 1
    requeue = AuditEntry.objects.filter(ticket_id=ticket["id"], action="ticket.running")
    assert requeue.count() == 1


def test_hypervisor_down_fails_in_words_then_recovers(api, own_lab, fresh_vcsim, requester, approver, workers):
    workers(1, beat=False)
    ticket = file_ticket(api(requester), own_lab, "vm_create", VM_CREATE)
    fresh_vcsim.stop()
    approve_all(api, ticket, approver)
    failed = wait_for(ticket["id"], "failed", "succeeded", timeout=60)
    assert failed.state == "failed"
    assert "could not be reached after 3 tries" in failed.error
    assert AuditEntry.objects.filter(ticket_id=ticket["id"], action="hypervisor.retry").count() == 3
    fresh_vcsim.start()
    again = file_ticket(api(requester), own_lab, "vm_create", {**VM_CREATE, "name": "web-new-02"})
    approve_all(api, again, approver)
    assert wait_for(again["id"], "succeeded", "failed").state == "succeeded"


def test_worker_killed_mid_clone_ends_succeeded_with_one_vm(api, db, roles, requester, approver, workers):
    # vcsim holds each clone for 4 s, so the worker can be killed inside it.
    slow = start_vcsim(method_delay="CloneVM_Task=4000")
    try:
        connector = register_lab(slow, name="slow-lab")
        [first] = workers(1)
        ticket = file_ticket(api(requester), connector, "vm_create", VM_CREATE)
        approve_all(api, ticket, approver)
        deadline = time.monotonic() + 20
        while Ticket.objects.get(pk=ticket["id"]).progress != "calling the hypervisor":
            assert time.monotonic() < deadline, first.output()
            time.sleep(0.05)
        time.sleep(1)
        first.kill()
        assert Ticket.objects.get(pk=ticket["id"]).state == "running"
        workers(1)  # a new worker (with beat) takes over once the lease ends
        done = wait_for(ticket["id"], "succeeded", "failed", timeout=60)
        assert done.state == "succeeded", done.error
        vms = find_vms(slow.connect(), VM_CREATE["name"])
        assert len(vms) == 1 and vms[0].config.instanceUuid == str(done.operation_uuid)
        assert (
            AuditEntry.objects.filter(ticket_id=ticket["id"], action="ticket.succeeded").get().actor_name == "sweeper"
        )
    finally:
        slow.close()


# The connections worker processes hold, by the name they give PostgreSQL.
WORKER_BACKENDS = "FROM pg_stat_activity WHERE application_name = 'twokey-worker' AND datname = current_database()"


def worker_backends() -> set:
    """The PostgreSQL backends worker processes hold: (pid, backend_start)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pid, backend_start {WORKER_BACKENDS}")  # noqa: S608 - a constant
        return set(cursor.fetchall())


TASK_LINE = re.compile(r"Task [\w.]+\[([0-9a-f-]+)\] (received|succeeded|raised|retry)")


def wait_until_idle(worker, timeout: float = 20.0) -> None:
    """Every task the worker received (a checkpoint held for its countdown
    too) has ended, and its backends sit idle: a connection dropped now is
    dropped between tasks, not under one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        received, ended = set(), set()
        for task_id, what in TASK_LINE.findall(worker.output()):
            (received if what == "received" else ended).add(task_id)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) {WORKER_BACKENDS} AND state <> 'idle'")  # noqa: S608 - a constant
            [busy] = cursor.fetchone()
        if received <= ended and not busy:
            return
        time.sleep(0.1)
    raise AssertionError("the worker did not go idle")


def test_a_worker_keeps_its_database_connection_and_replaces_one_the_server_dropped(
    api, own_lab, requester, approver, workers, check
):
    """Celery closes every database connection at each task's edges unless
    told otherwise, so each ticket started a new PostgreSQL backend. The
    worker keeps its connection from one ticket to the next, as Django keeps
    them across requests; one the server dropped between two tickets is
    replaced when the next one starts (a health check), not failed on."""
    [worker] = workers(1, beat=False)

    def migrate_and_wait():
        body = migrate_within_zone(api(requester), own_lab)
        ticket = file_ticket(api(requester), own_lab, "vm_migrate", body)
        approve_all(api, ticket, approver)
        done = wait_for(ticket["id"], "succeeded", "failed")
        assert done.state == "succeeded", done.error
        [vm] = find_vms(check, "dev-app-01")
        assert vm.runtime.host.name == body["target_host"]  # read back in a session of the test's own

    migrate_and_wait()
    wait_until_idle(worker)  # the ticket's notifications and checkpoint are past
    after_first = worker_backends()
    assert after_first, "the worker closed its connection after the ticket"
    migrate_and_wait()
    assert after_first <= worker_backends(), "the second ticket ran on a new backend"

    wait_until_idle(worker)
    with connection.cursor() as cursor:  # the server drops the worker's connections
        cursor.execute(f"SELECT pg_terminate_backend(pid) {WORKER_BACKENDS}")  # noqa: S608 - a constant
    migrate_and_wait()
    assert not after_first & worker_backends()
    # Whichever task came first after the drop (a notification or the
    # execution) ran on a new connection: none met the dropped one.
    assert "OperationalError" not in worker.output()
    assert "terminating connection" not in worker.output()
