"""VSphereConnector against a real vcsim lab (no mocks).

Every operation is read back through a separate pyVmomi session
(`vsphere_check`), not through the connector. Tests on the shared session
lab create objects with unique names; tests that stop the lab or need
special flags start their own.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
import uuid

import pytest
from pyVmomi import vim

from connectors import vsphere
from connectors.base import (
    AuthenticationFailed,
    ConnectionConfig,
    ConnectorError,
    ObjectNotFound,
    OperationRejected,
    TransientConnectorError,
)
from connectors.registry import BACKENDS, connector_for
from connectors.vsphere import VSphereConnector
from tests.fixtures.vcsim import VcsimProcess, start_vcsim, vcsim_binary

# -- helpers on the raw check session ---------------------------------------


def _all(si, vimtype):
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vimtype], True)
    try:
        return list(view.view)
    finally:
        view.DestroyView()


def _by_name(si, vimtype, name):
    found = [o for o in _all(si, vimtype) if o.name == name]
    assert len(found) == 1, f"expected one {vimtype.__name__} named {name!r}, found {len(found)}"
    return found[0]


def _vm_by_uuid(si, instance_uuid):
    return si.RetrieveContent().searchIndex.FindByUuid(None, instance_uuid, True, True)


def _nic_networks(vm):
    return [d.backing.deviceName for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]


def _entity_permissions(si, entity):
    am = si.RetrieveContent().authorizationManager
    roles = {r.roleId: r.name for r in am.roleList}
    return {(p.principal, roles[p.roleId], p.propagate) for p in am.RetrieveEntityPermissions(entity, False)}


def _unique(prefix):
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture
def connector(vcsim):
    return VSphereConnector(vcsim.config)


def _clone(connector, **overrides):
    args = dict(
        template="tpl-debian12",
        name=_unique("t-clone"),
        datastore="ds-prod",
        network="pg-prod",
        cpus=3,
        memory_mb=3072,
        instance_uuid=str(uuid.uuid4()),
        host="prod-esx-02",
    )
    args.update(overrides)
    return args, connector.clone_vm(**args)


# -- inventory ----------------------------------------------------------------


def test_inventory_has_the_lab(connector, vsphere_check):
    inv = connector.inventory()

    assert {c.name for c in inv.clusters} == {"prod", "dev"}
    assert {(h.name, h.cluster) for h in inv.hosts} == {
        ("prod-esx-01", "prod"),
        ("prod-esx-02", "prod"),
        ("dev-esx-01", "dev"),
        ("dev-esx-02", "dev"),
        ("dmz-esx-01", None),
    }
    assert {"ds-prod", "ds-dev", "ds-dmz"} <= {d.name for d in inv.datastores}
    assert {n.name for n in inv.networks} == {"pg-prod", "pg-dev", "pg-dmz"}
    assert {"templates", "prod-vms", "dev-vms", "dmz-vms"} <= {f.name for f in inv.folders}
    assert {"Admin", "ReadOnly", "NoAccess", "VirtualMachineUser"} <= {r.name for r in inv.roles}

    vms = {v.name: v for v in inv.vms}
    assert {n for n, v in vms.items() if v.is_template} == {"tpl-debian12", "tpl-rhel9", "tpl-win2022"}
    assert all(vms[t].power_state == "poweredOff" for t in ("tpl-debian12", "tpl-rhel9", "tpl-win2022"))
    expected = {
        "prod-web-01": "prod-esx-01",
        "prod-db-01": "prod-esx-02",
        "dev-app-01": "dev-esx-01",
        "dev-app-02": "dev-esx-02",
        "dmz-proxy-01": "dmz-esx-01",
    }
    for name, host in expected.items():
        assert vms[name].host == host
        assert not vms[name].is_template
        assert vms[name].power_state == "poweredOn"
    assert vms["prod-web-01"].datastores == ("ds-prod",)
    # No simulator default objects with generated names.
    assert not [v for v in vms if v.startswith("DC0")]

    # Ids and uuids agree with what a separate session sees.
    for vm in _all(vsphere_check, vim.VirtualMachine):
        if vm.name in vms:
            assert vms[vm.name].id == vm._moId
            assert vms[vm.name].instance_uuid == vm.config.instanceUuid
    for host in _all(vsphere_check, vim.HostSystem):
        assert {h.name: h.id for h in inv.hosts}[host.name] == host._moId
    prod = _by_name(vsphere_check, vim.ClusterComputeResource, "prod")
    assert {c.name: c.id for c in inv.clusters}["prod"] == prod._moId
    role_ids = {r.name: r.id for r in inv.roles}
    assert role_ids["Admin"] == -1


def test_find_vm_by_uuid(connector, vsphere_check):
    raw = _by_name(vsphere_check, vim.VirtualMachine, "dev-app-01")
    found = connector.find_vm_by_uuid(raw.config.instanceUuid)
    assert found is not None
    assert (found.id, found.name, found.host) == (raw._moId, "dev-app-01", "dev-esx-01")
    assert found.datastores == ("ds-dev",)
    # Case does not matter; an unknown uuid is None.
    assert connector.find_vm_by_uuid(raw.config.instanceUuid.upper()).id == raw._moId
    assert connector.find_vm_by_uuid(str(uuid.uuid4())) is None


# -- clone --------------------------------------------------------------------


def test_clone_places_sizes_and_is_idempotent(connector, vsphere_check):
    args, result = _clone(connector)

    assert not result.already_done
    assert result.task_id and result.task_id.startswith("task-")
    vm = _vm_by_uuid(vsphere_check, args["instance_uuid"])
    assert vm is not None, "no VM carries the requested instance uuid"
    assert result.object_id == vm._moId
    assert vm.name == args["name"]
    assert vm.config.instanceUuid == args["instance_uuid"]
    assert vm.runtime.host.name == "prod-esx-02"
    assert [d.name for d in vm.datastore] == ["ds-prod"]
    assert _nic_networks(vm) == ["pg-prod"]
    assert vm.config.hardware.numCPU == 3
    assert vm.config.hardware.memoryMB == 3072
    assert not vm.config.template
    task = vim.Task(result.task_id, vsphere_check._stub)
    assert task.info.state == "success"

    again = connector.clone_vm(**args)
    assert again.already_done
    assert again.task_id is None
    assert again.object_id == vm._moId
    same = [v for v in _all(vsphere_check, vim.VirtualMachine) if v.name == args["name"]]
    assert len(same) == 1


def test_clone_onto_cluster_adds_a_nic_when_the_template_has_none(connector, vsphere_check):
    args, result = _clone(
        connector,
        template="tpl-win2022",
        datastore="ds-dev",
        network="pg-dev",
        cpus=2,
        memory_mb=2048,
        host=None,
        cluster="dev",
    )
    vm = _vm_by_uuid(vsphere_check, args["instance_uuid"])
    assert vm._moId == result.object_id
    assert vm.runtime.host.parent.name == "dev"
    assert vm.resourcePool.owner.name == "dev"
    assert _nic_networks(vm) == ["pg-dev"]
    assert (vm.config.hardware.numCPU, vm.config.hardware.memoryMB) == (2, 2048)


def test_clone_by_managed_object_ids(connector, vsphere_check):
    tpl = _by_name(vsphere_check, vim.VirtualMachine, "tpl-rhel9")
    host = _by_name(vsphere_check, vim.HostSystem, "dmz-esx-01")
    ds = _by_name(vsphere_check, vim.Datastore, "ds-dmz")
    net = _by_name(vsphere_check, vim.Network, "pg-dmz")
    args, result = _clone(
        connector,
        template=tpl._moId,
        host=host._moId,
        datastore=ds._moId,
        network=net._moId,
        cpus=1,
        memory_mb=1024,
    )
    vm = _vm_by_uuid(vsphere_check, args["instance_uuid"])
    assert vm.runtime.host.name == "dmz-esx-01"
    assert [d.name for d in vm.datastore] == ["ds-dmz"]
    assert _nic_networks(vm) == ["pg-dmz"]


def test_clone_name_clash_with_another_vm_is_rejected(connector, vsphere_check):
    new_uuid = str(uuid.uuid4())
    with pytest.raises(OperationRejected, match="prod-web-01"):
        _clone(connector, name="prod-web-01", instance_uuid=new_uuid)
    assert _vm_by_uuid(vsphere_check, new_uuid) is None
    assert len([v for v in _all(vsphere_check, vim.VirtualMachine) if v.name == "prod-web-01"]) == 1


# -- relocate -----------------------------------------------------------------


def test_relocate_and_relocate_again(connector, vsphere_check):
    args, cloned = _clone(connector)
    name = args["name"]

    moved = connector.relocate_vm(vm=name, host="prod-esx-01")
    assert not moved.already_done and moved.task_id.startswith("task-")
    vm = _vm_by_uuid(vsphere_check, args["instance_uuid"])
    assert vm.runtime.host.name == "prod-esx-01"

    again = connector.relocate_vm(vm=name, host="prod-esx-01")
    assert again.already_done and again.task_id is None

    # Across zones, with storage, naming the VM by id.
    moved = connector.relocate_vm(vm=cloned.object_id, host="dmz-esx-01", datastore="ds-dmz")
    assert not moved.already_done
    vm = _vm_by_uuid(vsphere_check, args["instance_uuid"])
    assert vm.runtime.host.name == "dmz-esx-01"
    assert [d.name for d in vm.datastore] == ["ds-dmz"]
    assert vm.resourcePool.owner.name == "dmz-esx-01"
    assert connector.relocate_vm(vm=name, host="dmz-esx-01", datastore="ds-dmz").already_done


# -- permissions --------------------------------------------------------------


def test_add_read_and_remove_permissions(connector, vsphere_check):
    alice = _unique("LAB\\alice")
    bob = _unique("LAB\\bob")
    cluster = _by_name(vsphere_check, vim.ClusterComputeResource, "prod")

    granted = connector.add_permission(principal=alice, role="ReadOnly", entity="prod")
    assert not granted.already_done and granted.object_id == cluster._moId
    assert (alice, "ReadOnly", True) in _entity_permissions(vsphere_check, cluster)
    assert connector.add_permission(principal=alice, role="ReadOnly", entity="prod").already_done

    # A second principal on the same entity keeps the first one.
    connector.add_permission(principal=bob, role="VirtualMachineUser", entity=cluster._moId, propagate=False)
    seen = _entity_permissions(vsphere_check, cluster)
    assert {(alice, "ReadOnly", True), (bob, "VirtualMachineUser", False)} <= seen

    # Changing the role is not "already done".
    changed = connector.add_permission(principal=alice, role="VirtualMachinePowerUser", entity="prod")
    assert not changed.already_done
    seen = _entity_permissions(vsphere_check, cluster)
    assert (alice, "VirtualMachinePowerUser", True) in seen and (alice, "ReadOnly", True) not in seen

    listed = connector.permissions("prod")
    mine = {p.principal: p for p in listed if p.principal in (alice, bob)}
    assert mine[alice].role == "VirtualMachinePowerUser"
    assert (mine[alice].entity, mine[alice].entity_id) == ("prod", cluster._moId)
    assert mine[bob].propagate is False and mine[bob].is_group is False
    everything = connector.permissions()
    assert {alice, bob} <= {p.principal for p in everything}
    assert any(p.principal == "root" and p.role == "Admin" and p.entity == "Datacenters" for p in everything)

    removed = connector.remove_permission(principal=alice, entity="prod")
    assert not removed.already_done
    seen = _entity_permissions(vsphere_check, cluster)
    assert all(p[0] != alice for p in seen)
    assert (bob, "VirtualMachineUser", False) in seen
    assert connector.remove_permission(principal=alice, entity="prod").already_done
    connector.remove_permission(principal=bob, entity="prod")
    assert all(p[0] != bob for p in _entity_permissions(vsphere_check, cluster))


@pytest.mark.parametrize(
    ("vimtype", "name"),
    [
        (vim.VirtualMachine, "dmz-proxy-01"),
        (vim.HostSystem, "dev-esx-02"),
        (vim.Datacenter, "lab"),
        (vim.Folder, "dev-vms"),
    ],
)
def test_permissions_on_each_kind_of_entity(connector, vsphere_check, vimtype, name):
    principal = _unique("LAB\\ops")
    entity = _by_name(vsphere_check, vimtype, name)
    connector.add_permission(principal=principal, role="ReadOnly", entity=name)
    assert (principal, "ReadOnly", True) in _entity_permissions(vsphere_check, entity)
    assert [p.entity_id for p in connector.permissions(entity._moId) if p.principal == principal] == [entity._moId]
    connector.remove_permission(principal=principal, entity=entity._moId)
    assert all(p[0] != principal for p in _entity_permissions(vsphere_check, entity))


# -- errors -------------------------------------------------------------------


def test_unknown_objects_are_named(connector):
    with pytest.raises(ObjectNotFound, match="no-such-vm") as err:
        connector.relocate_vm(vm="no-such-vm", host="prod-esx-01")
    assert (err.value.kind, err.value.name) == ("VM", "no-such-vm")
    with pytest.raises(ObjectNotFound, match="no-such-host") as err:
        connector.relocate_vm(vm="prod-web-01", host="no-such-host")
    assert err.value.kind == "host"
    for field, kind in (("template", "template"), ("datastore", "datastore"), ("network", "network"), ("host", "host")):
        with pytest.raises(ObjectNotFound) as err:
            _clone(connector, **{field: f"no-such-{field}"})
        assert (err.value.kind, err.value.name) == (kind, f"no-such-{field}")
    with pytest.raises(ObjectNotFound) as err:
        connector.add_permission(principal="x", role="ReadOnly", entity="no-such-entity")
    assert err.value.name == "no-such-entity"
    with pytest.raises(ObjectNotFound) as err:
        connector.add_permission(principal="x", role="NoSuchRole", entity="prod")
    assert (err.value.kind, err.value.name) == ("role", "NoSuchRole")


def test_wrong_password_is_authentication_failed(vcsim):
    secret = "wrong-" + secrets.token_hex(8)
    config = ConnectionConfig(url=vcsim.url, username=vcsim.username, password=secret, verify_tls=False)
    connector = VSphereConnector(config)
    with pytest.raises(AuthenticationFailed) as err:
        connector.check_login()
    assert secret not in str(err.value) and secret not in repr(err.value)
    assert secret not in repr(connector) and secret not in repr(config)
    with pytest.raises(AuthenticationFailed):
        connector.inventory()


def test_nothing_listening_is_transient_and_quick():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = ConnectionConfig(url=f"https://127.0.0.1:{port}/sdk", username="u", password="p", verify_tls=False)
    started = time.monotonic()
    with pytest.raises(TransientConnectorError):
        VSphereConnector(config).inventory()
    assert time.monotonic() - started < 5


def test_verified_tls_rejects_the_self_signed_lab(vcsim):
    config = ConnectionConfig(url=vcsim.url, username=vcsim.username, password=vcsim.password, verify_tls=True)
    with pytest.raises(ConnectorError) as err:
        VSphereConnector(config).check_login()
    assert not isinstance(err.value, AuthenticationFailed)


# -- sessions -----------------------------------------------------------------


def test_session_is_shared_and_renewed_after_it_is_terminated(vcsim, vsphere_check):
    first = VSphereConnector(vcsim.config)
    second = VSphereConnector(vcsim.config)
    first.check_login()
    si = first.service_instance()
    assert second.service_instance() is si
    key = si.content.sessionManager.currentSession.key
    second.inventory()
    assert si.content.sessionManager.currentSession.key == key  # no new login

    vsphere_check.content.sessionManager.TerminateSession([key])

    inv = first.inventory()  # logs in again by itself
    assert inv.clusters
    renewed = first.service_instance()
    assert renewed.content.sessionManager.currentSession.key != key
    assert second.service_instance() is renewed


def test_lab_down_and_back(fresh_vcsim):
    connector = VSphereConnector(fresh_vcsim.config)
    connector.check_login()
    fresh_vcsim.stop()
    started = time.monotonic()
    with pytest.raises(TransientConnectorError):
        connector.inventory()
    assert time.monotonic() - started < 5
    fresh_vcsim.start()  # same port, fresh simulator (old sessions are gone)
    assert {c.name for c in connector.inventory().clusters} == {"prod", "dev"}


def test_method_delay_slows_clone():
    delay_ms = 1500
    with start_vcsim(method_delay=f"CloneVM_Task={delay_ms}") as lab:
        connector = VSphereConnector(lab.config)
        connector.check_login()
        started = time.monotonic()
        args, result = _clone(connector)
        elapsed = time.monotonic() - started
        assert elapsed >= delay_ms / 1000
        check = lab.connect()
        assert _vm_by_uuid(check, args["instance_uuid"])._moId == result.object_id
        # Other calls are not delayed.
        started = time.monotonic()
        connector.relocate_vm(vm=args["name"], host="prod-esx-01")
        assert time.monotonic() - started < delay_ms / 1000


# -- the launcher itself -----------------------------------------------------------


def test_launcher_requires_a_password_and_loopback():
    binary = str(vcsim_binary())
    env = {k: v for k, v in os.environ.items() if k != "VCSIM_PASSWORD"}
    run = subprocess.run(  # noqa: S603
        [binary, "-listen", "127.0.0.1:0"], env=env, capture_output=True, text=True, timeout=30
    )
    assert run.returncode != 0 and "password" in run.stderr
    run = subprocess.run(  # noqa: S603
        [binary, "-listen", "0.0.0.0:0", "-password", "x"], env=env, capture_output=True, text=True, timeout=30
    )
    assert run.returncode != 0 and "loopback" in run.stderr


def test_lab_really_checks_the_user_name(vcsim):
    config = ConnectionConfig(url=vcsim.url, username="someone-else", password=vcsim.password, verify_tls=False)
    with pytest.raises(AuthenticationFailed):
        VSphereConnector(config).check_login()


def test_vcsim_process_repr_hides_the_password(vcsim):
    assert vcsim.password not in repr(vcsim)
    assert isinstance(vcsim, VcsimProcess)


# -- registry -----------------------------------------------------------------


def test_registry():
    config = ConnectionConfig(url="https://vc.example/sdk", username="u", password="p")
    assert BACKENDS == {"vsphere": VSphereConnector}
    assert isinstance(connector_for("vsphere", config), VSphereConnector)
    with pytest.raises(ConnectorError, match="hyperv"):
        connector_for("hyperv", config)


def test_module_keeps_one_session_per_endpoint(vcsim):
    VSphereConnector(vcsim.config).check_login()
    # Pinned configs (a registered connector's) keep sessions of their own.
    keys = [k for k in vsphere._sessions if k[0] == vcsim.url and k[1] == vcsim.username and not (k[4] or k[5])]
    assert len(keys) == 1
    assert vcsim.password not in repr(keys)


def test_task_failure_is_operation_rejected_with_the_fault(fresh_vcsim):
    connector = VSphereConnector(fresh_vcsim.config)
    check = fresh_vcsim.connect()
    host = _by_name(check, vim.HostSystem, "dmz-esx-01")  # still runs dmz-proxy-01
    mine = vim.HostSystem(host._moId, connector.service_instance()._stub)  # on the connector's session
    with pytest.raises(OperationRejected, match="ResourceInUse") as err:
        connector._call(lambda content: connector._wait(content, mine.Destroy_Task()))
    assert "task-" in str(err.value)
    assert _by_name(check, vim.HostSystem, "dmz-esx-01")


def test_session_of_a_forked_child_is_its_own(vcsim):
    parent = VSphereConnector(vcsim.config)
    parent.check_login()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must log in anew, not reuse the parent's connection
        ok = False
        try:
            child = VSphereConnector(vcsim.config)
            ok = not vsphere._sessions and bool(child.inventory().clusters)
        finally:
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"
    parent.check_login()
