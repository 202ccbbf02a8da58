"""Heartbeat leases and "never twice": a dead worker's ticket is settled
within about a minute and a half with the default settings, a live worker
keeps its lease through a call longer than the lease, a worker whose lease
was taken does nothing, and an answer lost after the hypervisor was called
never leads to a second call. Real worker processes, PostgreSQL, Redis and
vcsim; the lost answer is made by a real proxy that drops it."""

import select
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.utils import timezone

from approvals.models import Ticket
from approvals.services import execution, sweeper
from audit.models import AuditEntry
from audit.verify import verify_chain
from connectors.base import TransientConnectorError
from connectors.vsphere import VSphereConnector
from tests.approvals.helpers import DEV_TO_PROD, file_ticket
from tests.approvals.test_execution import approve_all, find_vms, wait_for
from tests.conftest import register_lab
from tests.connectors.relay import self_signed_certificate
from tests.fixtures.vcsim import recent_tasks, start_vcsim

# The defaults of portal/settings.py, for the worker that must show them.
DEFAULT_LEASES = {
    "EXECUTION_LEASE_SECONDS": "60",
    "EXECUTION_LEASE_RENEW_SECONDS": "10",
    "SWEEP_INTERVAL_SECONDS": "30",
}


def actions(ticket_id):
    return list(AuditEntry.objects.filter(ticket_id=ticket_id).order_by("seq").values_list("action", flat=True))


def relocations(si, vm_name):
    [vm] = find_vms(si, vm_name)
    return recent_tasks(si, "relocateVm", vm._moId)


def wait_for_progress(ticket_id, progress, worker, timeout=30):
    deadline = time.monotonic() + timeout
    while Ticket.objects.get(pk=ticket_id).progress != progress:
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.05)


def migrate(api, connector, requester, approver, approver2):
    ticket = file_ticket(api(requester), connector, "vm_migrate", DEV_TO_PROD)
    approve_all(api, ticket, approver, approver2)
    return ticket


# -- a dead worker --------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_killed_inside_a_relocation_is_settled_within_two_minutes_with_default_leases(
    api, db, roles, requester, approver, approver2, workers
):
    # vcsim holds the RelocateVM_Task call for 15 s, so the kill lands inside
    # it; the simulator goes on and makes the move once, as vCenter would.
    slow = start_vcsim(method_delay="RelocateVM_Task=15000")
    try:
        connector = register_lab(slow, name="slow-lab")
        [first] = workers(1, beat=False, env=DEFAULT_LEASES)
        ticket = migrate(api, connector, requester, approver, approver2)
        wait_for_progress(ticket["id"], execution.PHASE_CALLING, first)
        time.sleep(1)
        first.kill()
        killed = time.monotonic()
        assert Ticket.objects.get(pk=ticket["id"]).state == "running"
        workers(1, env=DEFAULT_LEASES)  # a new worker, with beat
        done = wait_for(ticket["id"], "succeeded", "failed", timeout=120)
        settled = time.monotonic() - killed
        assert settled < 120, settled
        assert done.state == "succeeded", done.error
        check = slow.connect()
        [vm] = find_vms(check, "dev-app-01")
        assert vm.runtime.host.name == "prod-esx-01"
        assert len(relocations(check, "dev-app-01")) == 1
        assert actions(ticket["id"])[-2:] == ["ticket.lease_taken", "ticket.succeeded"]
        assert AuditEntry.objects.get(ticket_id=ticket["id"], action="ticket.succeeded").actor_name == "sweeper"
        assert verify_chain().ok
    finally:
        slow.close()


# -- a live worker ----------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_relocation_longer_than_the_lease_succeeds_once_without_a_takeover(
    api, db, roles, requester, approver, approver2, workers
):
    # Lease 8 s, renewed every 2 s, a sweep every 2 s (WORKER_ENV); the
    # relocation call alone takes 12 s.
    slow = start_vcsim(method_delay="RelocateVM_Task=12000")
    try:
        connector = register_lab(slow, name="slow-lab")
        workers(1)
        ticket = migrate(api, connector, requester, approver, approver2)
        done = wait_for(ticket["id"], "succeeded", "failed", timeout=60)
        assert done.state == "succeeded", done.error
        assert (done.finished_at - done.started_at).total_seconds() > 12
        assert "ticket.lease_taken" not in actions(ticket["id"])
        assert AuditEntry.objects.get(ticket_id=ticket["id"], action="ticket.succeeded").actor_name != "sweeper"
        assert len(relocations(slow.connect(), "dev-app-01")) == 1
    finally:
        slow.close()


@pytest.mark.django_db
def test_a_worker_whose_lease_was_taken_stops_without_acting(
    api, own_lab, fresh_vcsim, requester, approver, approver2, monkeypatch
):
    # When the sweeper takes a lease is a matter of timing no real part can be
    # told to hit: the sweeper is run for real at the one moment that matters,
    # after the worker's re-check and before its call.
    ticket = migrate(api, own_lab, requester, approver, approver2)
    real_recheck = execution.recheck

    def recheck_then_lease_runs_out(ticket, index):
        problem = real_recheck(ticket, index)
        Ticket.objects.filter(pk=ticket.pk).update(lease_expires_at=timezone.now())
        assert sweeper.take_back_leases() == 1
        return problem

    monkeypatch.setattr(execution, "recheck", recheck_then_lease_runs_out)
    assert execution.ticket_execute(ticket_id=ticket["id"], worker="slow-worker") == execution.LEASE_LOST
    after = Ticket.objects.get(pk=ticket["id"])
    assert after.state == "approved"  # queued again by the sweeper: the call was never made
    check = fresh_vcsim.connect()
    assert find_vms(check, "dev-app-01")[0].runtime.host.name == "dev-esx-01"
    assert relocations(check, "dev-app-01") == []
    assert "hypervisor.operation" not in actions(ticket["id"])


# -- a lost answer ----------------------------------------------------------------


class AnswerDroppingProxy:
    """Stands between the worker and the lab: ends TLS with a certificate of
    its own, opens TLS to the lab, and relays. Once, for the answer to the
    first request that names `method` (or, with `later`=n, the answer to the
    n-th request after it), it forwards the request, reads the first bytes of
    the answer and closes both sides instead: the lab acted, the worker hears
    nothing. With `early`, it closes half a second after forwarding the
    request that names `method`, before any answer (the lab is still at it)."""

    def __init__(self, lab, *, method: bytes, later: int = 0, early: bool = False):
        self._dir = tempfile.TemporaryDirectory(prefix="twokey-dropper-")
        cert, key, _ = self_signed_certificate(Path(self._dir.name))
        self._server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_tls.load_cert_chain(cert, key)
        self._client_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._client_tls.check_hostname = False
        self._client_tls.verify_mode = ssl.CERT_NONE  # the lab's throwaway certificate
        self.lab = lab
        self.method = method
        self.later = later
        self.early = early
        self.countdown: int | None = None
        self.dropped = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/sdk"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _drop_this_answer(self, request: bytes) -> bool:
        with self._lock:
            if self.dropped:
                return False
            if self.countdown is None and self.method in request:
                self.countdown = self.later
            elif self.countdown is not None:
                self.countdown -= 1
            if self.countdown == 0:
                self.dropped += 1
                return True
            return False

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.lab.port), timeout=10)
            client = self._server_tls.wrap_socket(client, server_side=True)
            upstream = self._client_tls.wrap_socket(upstream)
        except (OSError, ssl.SSLError):
            client.close()
            return
        # One thread copies both ways, as tests/connectors/relay.py does (an
        # SSL socket is not read and written from two threads at once).
        peer = {client: upstream, upstream: client}
        for sock in peer:
            sock.setblocking(False)
        request = bytearray()  # what the client sent since the last answer began
        hang_up_at = None
        try:
            while True:
                ready = [s for s in peer if s.pending()]
                if not ready:
                    wait = 60 if hang_up_at is None else max(0, hang_up_at - time.monotonic())
                    ready, _, _ = select.select(list(peer), [], [], wait)
                    if hang_up_at is not None and time.monotonic() >= hang_up_at:
                        return
                    if not ready:
                        return
                for sock in ready:
                    try:
                        chunk = sock.recv(65536)
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                        continue  # a TLS record without data (a session ticket, say)
                    if not chunk:
                        return
                    if sock is client:
                        request.extend(chunk)
                        if self.early and hang_up_at is None and self._drop_this_answer(bytes(request)):
                            hang_up_at = time.monotonic() + 0.5
                    elif request:  # the first bytes of an answer
                        if self._drop_this_answer(bytes(request)):
                            return
                        request.clear()
                    other = peer[sock]
                    other.setblocking(True)
                    other.sendall(chunk)
                    other.setblocking(False)
        except OSError:
            return
        finally:
            for sock in peer:
                try:
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()
        self._dir.cleanup()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("later", "proof"),
    [(0, "the VM, read by id"), (1, "the recorded task")],
    ids=["answer-to-the-call-lost", "answer-to-the-first-task-poll-lost"],
)
def test_a_lost_answer_after_the_call_is_settled_without_a_second_task(
    api, db, roles, fresh_vcsim, requester, approver, approver2, workers, later, proof
):
    proxy = AnswerDroppingProxy(fresh_vcsim, method=b"RelocateVM_Task", later=later)
    try:
        proxied = SimpleNamespace(url=proxy.url, username=fresh_vcsim.username, password=fresh_vcsim.password)
        connector = register_lab(proxied, name="proxied-lab")
        workers(1)
        ticket = migrate(api, connector, requester, approver, approver2)
        done = wait_for(ticket["id"], "succeeded", "failed", timeout=60)
        assert proxy.dropped == 1
        assert done.state == "succeeded", f"{proof}: {done.error}"
        check = fresh_vcsim.connect()
        assert find_vms(check, "dev-app-01")[0].runtime.host.name == "prod-esx-01"
        assert len(relocations(check, "dev-app-01")) == 1
        story = actions(ticket["id"])
        assert "hypervisor.answer_lost" in story and "hypervisor.retry" not in story
        assert AuditEntry.objects.get(ticket_id=ticket["id"], action="ticket.succeeded").actor_name != "sweeper"
        if later:  # the task id was recorded before the wait, and its state decided
            assert done.hypervisor_task_id == relocations(check, "dev-app-01")[0].key
            assert "succeeded (its answer was lost)" in done.result["summary"]
        else:  # no task id was heard: the inventory decided, by identity
            assert done.result["summary"] == "confirmed on the hypervisor"
    finally:
        proxy.close()


# -- the connector: a write is never run twice ----------------------------------------


def test_a_write_whose_session_expires_mid_call_is_not_run_again():
    # vcsim holds the permission read that precedes the write for 2 s; another
    # session ends the connector's session meanwhile, so the write that
    # follows is refused (vcsim lets property reads through without a
    # session, so the write is the first call to notice). A read would log in
    # again and run once more; the write must not.
    with start_vcsim(method_delay="RetrieveEntityPermissions=2000") as lab:
        connector = VSphereConnector(lab.config)
        connector.check_login()
        check = lab.connect()
        [vm] = find_vms(check, "prod-web-01")
        key = connector.service_instance().content.sessionManager.currentSession.key
        ended = threading.Timer(1.0, lambda: check.content.sessionManager.TerminateSession([key]))
        ended.start()
        with pytest.raises(TransientConnectorError, match="must be checked"):
            connector.add_permission(principal="LAB\\alice", role="VirtualMachinePowerUser", entity_id=vm._moId)
        ended.join()
        # The next call logs in again by itself; the grant was not made twice, nor once.
        assert [p for p in connector.permissions(vm._moId) if p.principal == "LAB\\alice"] == []


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_answer_lost_before_the_task_exists_needs_an_operator_and_no_second_task(
    api, db, roles, requester, approver, approver2, workers
):
    # vcsim holds the relocation call for 3 s and the proxy hangs up on it
    # after half a second: the worker cannot know whether a task will appear,
    # and the VM is not moved yet when it looks. Calling again would start a
    # second relocation; it must fail in words instead.
    slow = start_vcsim(method_delay="RelocateVM_Task=3000")
    proxy = AnswerDroppingProxy(slow, method=b"RelocateVM_Task", early=True)
    try:
        proxied = SimpleNamespace(url=proxy.url, username=slow.username, password=slow.password)
        connector = register_lab(proxied, name="proxied-lab")
        workers(1)
        ticket = migrate(api, connector, requester, approver, approver2)
        done = wait_for(ticket["id"], "succeeded", "failed", timeout=60)
        assert proxy.dropped == 1
        assert done.state == "failed"
        assert done.error.startswith("Needs an operator: the hypervisor was called and its answer was lost")
        assert "It was not called again" in done.error
        time.sleep(4)  # the held call ends in the lab
        check = slow.connect()
        assert find_vms(check, "dev-app-01")[0].runtime.host.name == "prod-esx-01"
        assert len(relocations(check, "dev-app-01")) == 1
        assert verify_chain().ok
    finally:
        proxy.close()
        slow.close()
