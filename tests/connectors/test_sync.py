"""The inventory sync as it runs: a real `manage.py sync_inventory` process
follows a vcsim lab of the test's own; changes made around the portal
(through a separate pyvmomi session) reach the inventory table and become
findings within seconds, once, with the event's user where vcsim gives one.

vcsim's lab accepts one account only, the connector's: every change made by
hand here is the portal's own account acting without a ticket."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from pyVmomi import vim, vmodl

from audit.models import AuditEntry, Finding
from connectors.inventory_store import load_inventory
from connectors.models import InventoryObject, InventoryState
from connectors.registry import connector_for
from tests.approvals.helpers import ADMIN_ACCESS, VM_CREATE
from tests.audit.test_drift import carry_out, clone_by_hand, find, grant_by_hand, move_by_hand, wait
from tests.conftest import register_lab
from tests.fixtures.workers import subprocess_database_url

pytestmark = pytest.mark.django_db(transaction=True)
REPO_ROOT = Path(__file__).resolve().parents[2]
SYNC_ENV = {"SYNC_HEARTBEAT_SECONDS": "1", "SYNC_PERMISSIONS_SECONDS": "1", "SYNC_BACKOFF_MAX_SECONDS": "1"}


def wait_for(condition, *, timeout, what=lambda: ""):
    """condition()'s value once it is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(
        f"not within {timeout} s; findings {list(Finding.objects.values('kind', 'observed'))}\n{what()}"
    )


class Sync:
    """One sync_inventory process."""

    def __init__(self, name: str):
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix="twokey-sync-", suffix=".log", delete=False)  # noqa: SIM115
        env = {**os.environ, **SYNC_ENV, "DATABASE_URL": subprocess_database_url(), "TWOKEY_SERVICE": "worker"}
        self.proc = subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "manage.py", "sync_inventory", "--connector", name],
            cwd=REPO_ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def syncs():
    started = []

    def start(name):
        started.append(Sync(name))
        return started[-1]

    yield start
    for sync in started:
        if sync.proc.poll() is None:
            sync.kill()  # quicker than a graceful stop; nothing is left half-written either way


@pytest.fixture
def lab(transactional_db, fresh_vcsim, roles):
    return register_lab(fresh_vcsim)


@pytest.fixture
def si(fresh_vcsim):
    return fresh_vcsim.connect()


def state(lab):
    return InventoryState.objects.filter(connector=lab).first()


def synced(lab, sync):
    wait_for(lambda: (s := state(lab)) is not None and s.permissions_read_at, timeout=20, what=sync.output)


def finding(kind, **observed):
    def found():
        for f in Finding.objects.filter(kind=kind):
            if all(f.observed.get(k) == v for k, v in observed.items()):
                return f
        return None

    return found


def test_follows_creates_renames_moves_deletions_and_permissions(lab, si, syncs):
    sync = syncs(lab.name)
    synced(lab, sync)
    assert InventoryObject.objects.filter(connector=lab, type="vm").count() == 5

    clone_by_hand(si, "tpl-rhel9", "rogue-01")
    created = wait_for(finding("portal_account", what="created", name="rogue-01"), timeout=10, what=sync.output)
    row = InventoryObject.objects.get(connector=lab, name="rogue-01")
    assert created.object_ref == f"vm:{row.instance_uuid}:created"
    assert created.observed["by"] == lab.username and created.observed["event"] == "VmClonedEvent"
    assert created.observed["words"].startswith(f"VM rogue-01 created by {lab.username} at ")

    vm = find(si, vim.VirtualMachine, "dev-app-01")
    wait(vm.Rename_Task("dev-app-renamed"))
    renamed = wait_for(finding("vm_changed", what="renamed", name="dev-app-renamed"), timeout=10)
    assert renamed.observed["before"]["name"] == "dev-app-01" and renamed.observed["by"] == ""
    assert InventoryObject.objects.get(connector=lab, moid=vm._moId).path.endswith("/dev-app-renamed")

    move_by_hand(si, "prod-db-01", "prod-esx-01")
    moved = wait_for(finding("vm_moved", name="prod-db-01"), timeout=10)
    host = find(si, vim.HostSystem, "prod-esx-01")._moId
    assert (moved.observed["host"], moved.observed["host_name"]) == (host, "prod-esx-01")
    assert InventoryObject.objects.get(connector=lab, name="prod-db-01").host_id == host

    gone = find(si, vim.VirtualMachine, "dev-app-02")
    wait(gone.PowerOffVM_Task())
    wait(gone.Destroy_Task())
    removed = wait_for(finding("portal_account", what="removed", name="dev-app-02"), timeout=10)
    assert removed.observed["event"] == "VmRemovedEvent"
    assert not InventoryObject.objects.filter(connector=lab, moid=gone._moId).exists()

    grant_by_hand(si, "dmz-proxy-01", "LAB\\mallory", "ReadOnly")
    granted = wait_for(finding("permission_unexplained", principal="LAB\\mallory"), timeout=10)
    assert granted.observed["role"] == "ReadOnly" and granted.observed["what"] == "permission_added"
    assert granted.observed["words"].startswith("ReadOnly for LAB\\mallory on dmz-proxy-01 granted")
    entity = find(si, vim.VirtualMachine, "dmz-proxy-01")
    si.RetrieveContent().authorizationManager.RemoveEntityPermission(entity=entity, user="LAB\\mallory", isGroup=False)
    wait_for(finding("permission_removed", principal="LAB\\mallory"), timeout=10)

    # A folder renamed moves the paths beneath it: the sync reads everything again.
    folder = find(si, vim.Folder, "dmz-vms")
    wait(folder.Rename_Task("dmz-vms-renamed"))
    wait_for(finding("object_changed", what="renamed", name="dmz-vms-renamed"), timeout=20, what=sync.output)
    proxy = InventoryObject.objects.get(connector=lab, name="dmz-proxy-01")
    assert "/dmz-vms-renamed/" in proxy.path

    raised = AuditEntry.objects.filter(action="finding.raised", actor_name="drift")
    assert raised.count() == Finding.objects.count() == 7
    assert state(lab).error == "" and state(lab).synced_at
    # Followed change by change, the table is what a full read gives.
    assert load_inventory(lab) == connector_for(lab.kind, lab.connection_config()).inventory()


def test_the_stand_by_takes_over_from_a_killed_holder_and_resumes_without_duplicates(lab, si, syncs):
    first = syncs(lab.name)
    synced(lab, first)
    second = syncs(lab.name)
    move_by_hand(si, "prod-db-01", "prod-esx-01")
    wait_for(finding("vm_moved", name="prod-db-01"), timeout=10, what=first.output)
    assert state(lab).holder.endswith(f":{first.proc.pid}")  # the second stands by

    # Paused, the holder cannot see the next change; killed, it frees the lock:
    # the change is one no sync followed, for the one taking over to find.
    first.proc.send_signal(signal.SIGSTOP)
    move_by_hand(si, "dev-app-01", "dev-esx-02")
    first.kill()
    wait_for(finding("vm_moved", name="dev-app-01"), timeout=20, what=second.output)
    assert state(lab).holder.endswith(f":{second.proc.pid}")
    move_by_hand(si, "dev-app-02", "dev-esx-01")  # and it follows from there
    wait_for(finding("vm_moved", name="dev-app-02"), timeout=10, what=second.output)
    assert sorted(Finding.objects.values_list("kind", "observed__name")) == [
        ("vm_moved", "dev-app-01"),
        ("vm_moved", "dev-app-02"),
        ("vm_moved", "prod-db-01"),
    ]


def test_hypervisor_down_is_said_in_words_and_cleared_when_back(lab, fresh_vcsim, syncs):
    sync = syncs(lab.name)
    synced(lab, sync)
    fresh_vcsim.stop()
    down = wait_for(lambda: (s := state(lab)).error and s, timeout=15, what=sync.output)
    assert down.error.startswith("hypervisor unreachable: ")
    assert lab.password_encrypted not in down.error
    fresh_vcsim.start()
    wait_for(lambda: state(lab).error == "", timeout=20, what=sync.output)
    beat = state(lab).synced_at
    wait_for(lambda: state(lab).synced_at > beat, timeout=5)


def test_what_tickets_do_is_explained_while_it_follows(lab, si, syncs, api, requester, approver, approver2):
    sync = syncs(lab.name)
    synced(lab, sync)
    carry_out(api, lab, requester, [approver], "vm_create", VM_CREATE)
    carry_out(api, lab, requester, [approver], "vm_migrate", {"vm": "dev-app-01", "target_host": "dev-esx-02"})
    carry_out(api, lab, requester, [approver, approver2], "admin_access", ADMIN_ACCESS)
    # The table shows all three...
    wait_for(lambda: InventoryObject.objects.filter(connector=lab, name=VM_CREATE["name"]).exists(), timeout=10)
    wait_for(
        lambda: any(p["principal"] == ADMIN_ACCESS["principal"] for p in state(lab).permissions),
        timeout=10,
        what=sync.output,
    )
    moved = InventoryObject.objects.get(connector=lab, name="dev-app-01")
    assert moved.host_id == find(si, vim.HostSystem, "dev-esx-02")._moId
    # ...and no finding, though the portal's account made every change.
    move_by_hand(si, "prod-db-01", "prod-esx-01")
    wait_for(finding("vm_moved", name="prod-db-01"), timeout=10, what=sync.output)
    assert Finding.objects.count() == 1


def test_an_update_wait_that_ends_empty_is_not_logged_by_the_lab(fresh_vcsim):
    """The sync waits one heartbeat at a time; the simulator noted each empty
    wait, which under ./twokey run buried its log in one line every two
    seconds. The lab's launcher drops that note and keeps the rest."""
    si = fresh_vcsim.connect()
    pc = si.content.propertyCollector
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=si.content.rootFolder)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.Folder, pathSet=["name"])],
    )
    pc.CreateFilter(spec, partialUpdates=False)
    first = pc.WaitForUpdatesEx("", vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=1))
    assert first is not None
    empty = pc.WaitForUpdatesEx(first.version, vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=1))
    assert empty is None  # the wait ran out with nothing to report
    log = fresh_vcsim.stderr_text
    assert "serving https://" in log  # the launcher's own lines still come through
    assert "MaxWaitSeconds exceeded" not in log
