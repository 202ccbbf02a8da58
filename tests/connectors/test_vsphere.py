"""VSphereConnector against a real vcsim lab (no mocks).

Every operation is read back through a separate pyVmomi session
(`vsphere_check`), not through the connector. Objects are given to the
connector by managed object id only; the tests look the ids up by name in the
check session. Tests on the shared session lab create objects with unique
names; tests that stop the lab, count its tasks or need special flags start
their own. The default-model tests run against vcsim's own inventory.
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
    Inventory,
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


def _id(si, vimtype, name):
    return _by_name(si, vimtype, name)._moId


def _vm_by_uuid(si, instance_uuid):
    return si.RetrieveContent().searchIndex.FindByUuid(None, instance_uuid, True, True)


def _cards(vm):
    return [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]


def _card_networks(si, vm):
    """The moid of each card's network, read from its backing."""
    keys = {pg.key: pg._moId for pg in _all(si, vim.dvs.DistributedVirtualPortgroup)}
    out = []
    for card in _cards(vm):
        if isinstance(card.backing, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
            out.append(keys[card.backing.port.portgroupKey])
        else:
            out.append(card.backing.network._moId)
    return out


def _path(si, obj):
    root = si.RetrieveContent().rootFolder._moId
    names = []
    while obj is not None and obj._moId != root:
        names.append(obj.name.replace("/", "%2f"))
        obj = obj.parent if obj.parent is not None else getattr(obj, "parentVApp", None)
    return "/" + "/".join(reversed(names))


def _tasks_on(si, moid):
    """(short description id, state) of the simulator's recent tasks on one entity."""
    tasks = si.RetrieveContent().taskManager.recentTask or []
    return [
        (t.info.descriptionId.split(".")[-1].lower(), str(t.info.state))
        for t in tasks
        if t.info.entity is not None and t.info.entity._moId == moid
    ]


def _entity_permissions(si, entity):
    am = si.RetrieveContent().authorizationManager
    roles = {r.roleId: r.name for r in am.roleList}
    return {(p.principal, roles[p.roleId], p.propagate) for p in am.RetrieveEntityPermissions(entity, False)}


def _wait(task):
    while task.info.state in ("queued", "running"):
        time.sleep(0.02)
    assert task.info.state == "success", task.info.error
    return task.info.result


def _clone_raw(si, template_name, name, folder):
    """A clone made behind the connector's back (as an admin in vCenter would)."""
    tpl = _by_name(si, vim.VirtualMachine, template_name)
    pool = _by_name(si, vim.ClusterComputeResource, "dev").resourcePool
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=pool), powerOn=False, template=False)
    return _wait(tpl.CloneVM_Task(folder=folder, name=name, spec=spec))


def _unique(prefix):
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture
def connector(vcsim):
    return VSphereConnector(vcsim.config)


def _clone(connector, si, **overrides):
    """Clone tpl-debian12 (one card) onto prod-esx-02, by ids from the check session."""
    args = dict(
        template_id=_id(si, vim.VirtualMachine, "tpl-debian12"),
        name=_unique("t-clone"),
        datastore_id=_id(si, vim.Datastore, "ds-prod"),
        networks=(_id(si, vim.Network, "pg-prod"),),
        cpus=3,
        memory_mb=3072,
        instance_uuid=str(uuid.uuid4()),
        host_id=_id(si, vim.HostSystem, "prod-esx-02"),
    )
    args.update(overrides)
    return args, connector.clone_vm(**args)


def _kinds(inv: Inventory):
    return {
        "datacenters": inv.datacenters,
        "folders": inv.folders,
        "clusters": inv.clusters,
        "hosts": inv.hosts,
        "resource_pools": inv.resource_pools,
        "datastore_clusters": inv.datastore_clusters,
        "datastores": inv.datastores,
        "networks": inv.networks,
        "vms": inv.vms,
    }


# -- inventory ----------------------------------------------------------------


def test_inventory_has_the_lab(connector, vsphere_check):
    inv = connector.inventory()
    check = vsphere_check

    clusters = {c.name: c.id for c in inv.clusters}
    assert set(clusters) == {"prod", "dev"}
    assert {(h.name, h.cluster_id) for h in inv.hosts} == {
        ("prod-esx-01", clusters["prod"]),
        ("prod-esx-02", clusters["prod"]),
        ("dev-esx-01", clusters["dev"]),
        ("dev-esx-02", clusters["dev"]),
        ("dmz-esx-01", None),
    }
    assert {"ds-prod", "ds-dev", "ds-dmz", "ds-templates"} <= {d.name for d in inv.datastores}
    assert {n.name for n in inv.networks} == {"pg-prod", "pg-dev", "pg-dmz"}
    assert {"templates", "prod-vms", "dev-vms", "dmz-vms"} <= {f.name for f in inv.folders}
    assert [d.name for d in inv.datacenters] == ["lab"]
    assert {"Admin", "ReadOnly", "NoAccess", "VirtualMachineUser"} <= {r.name for r in inv.roles}
    assert inv.root_folder_id == check.RetrieveContent().rootFolder._moId

    vms = {v.name: v for v in inv.vms}
    assert {n for n, v in vms.items() if v.is_template} == {"tpl-debian12", "tpl-rhel9", "tpl-win2022"}
    assert all(vms[t].power_state == "poweredOff" for t in ("tpl-debian12", "tpl-rhel9", "tpl-win2022"))
    hosts = {h.name: h.id for h in inv.hosts}
    expected = {
        "prod-web-01": "prod-esx-01",
        "prod-db-01": "prod-esx-02",
        "dev-app-01": "dev-esx-01",
        "dev-app-02": "dev-esx-02",
        "dmz-proxy-01": "dmz-esx-01",
    }
    for name, host in expected.items():
        assert vms[name].host_id == hosts[host]
        assert not vms[name].is_template
        assert vms[name].power_state == "poweredOn"
    assert vms["prod-web-01"].datastore_ids == (_id(check, vim.Datastore, "ds-prod"),)
    # No simulator default objects with generated names.
    assert not [v for v in vms if v.startswith("DC0")]

    # Cards: one per configured network, labelled as vCenter labels them.
    networks = {n.name: n.id for n in inv.networks}
    assert [(n.label, n.network_id) for n in vms["tpl-rhel9"].nics] == [
        ("Network adapter 1", networks["pg-dev"]),
        ("Network adapter 2", networks["pg-dev"]),
    ]
    assert [n.network_id for n in vms["prod-web-01"].nics] == [networks["pg-prod"]]
    assert vms["tpl-win2022"].nics == ()
    assert vms["tpl-rhel9"].nics[0].key != vms["tpl-rhel9"].nics[1].key

    # Ids and uuids agree with what a separate session sees.
    for vm in _all(check, vim.VirtualMachine):
        if vm.name in vms:
            assert vms[vm.name].id == vm._moId
            assert vms[vm.name].instance_uuid == vm.config.instanceUuid
            assert [n.key for n in vms[vm.name].nics] == [c.key for c in _cards(vm)]
    for host in _all(check, vim.HostSystem):
        assert hosts[host.name] == host._moId
    assert clusters["prod"] == _id(check, vim.ClusterComputeResource, "prod")
    role_ids = {r.name: r.id for r in inv.roles}
    assert role_ids["Admin"] == -1


def test_inventory_paths_and_parents_of_every_type(connector, vsphere_check):
    inv = connector.inventory()
    check = vsphere_check
    entities = {o._moId: o for o in _all(check, vim.ManagedEntity)}
    root = check.RetrieveContent().rootFolder
    entities[root._moId] = root

    for kind, items in _kinds(inv).items():
        assert items, f"no {kind}"
        assert len({i.id for i in items}) == len(items), f"duplicate {kind}"
        for item in items:
            obj = entities[item.id]
            assert obj.name == item.name, (kind, item)
            if item.id == root._moId:  # (vcsim cannot fetch an unset parent)
                assert (item.parent_id, item.path) == (None, "/")
                continue
            parent = obj.parent if obj.parent is not None else getattr(obj, "parentVApp", None)
            assert item.parent_id == (parent._moId if parent is not None else None), (kind, item)
            assert item.path == _path(check, obj), (kind, item)

    paths = {i.path: (kind, i) for kind, items in _kinds(inv).items() for i in items}
    assert paths["/"][1].id == inv.root_folder_id and paths["/"][1].parent_id is None
    assert paths["/lab"][0] == "datacenters"
    assert paths["/lab/vm"][0] == paths["/lab/host"][0] == "folders"
    assert paths["/lab/vm/prod-vms"][0] == "folders"
    assert paths["/lab/vm/prod-vms/prod-web-01"][0] == "vms"
    assert paths["/lab/vm/templates/tpl-rhel9"][1].is_template
    assert paths["/lab/host/prod"][0] == "clusters"
    assert paths["/lab/host/prod/prod-esx-01"][0] == "hosts"
    assert paths["/lab/host/dmz-esx-01/dmz-esx-01"][1].cluster_id is None
    assert paths["/lab/network/pg-prod"][0] == "networks"
    assert paths["/lab/datastore/ds-dev"][0] == "datastores"

    # The datastore cluster and the datastore inside it.
    (pod,) = inv.datastore_clusters
    assert (pod.name, pod.path) == ("dsc-prod", "/lab/datastore/dsc-prod")
    ds_prod = paths["/lab/datastore/dsc-prod/ds-prod"][1]
    assert ds_prod.datastore_cluster_id == pod.id == ds_prod.parent_id
    assert isinstance(entities[pod.id], vim.StoragePod)
    assert paths["/lab/datastore/ds-dev"][1].datastore_cluster_id is None

    # Resource pools: the cluster's hosts, or the standalone host.
    prod_pool = paths["/lab/host/prod/Resources"][1]
    assert prod_pool.cluster_id == paths["/lab/host/prod"][1].id
    assert set(prod_pool.host_ids) == {paths[f"/lab/host/prod/prod-esx-0{i}"][1].id for i in (1, 2)}
    dmz_pool = paths["/lab/host/dmz-esx-01/Resources"][1]
    assert dmz_pool.cluster_id is None
    assert dmz_pool.host_ids == (paths["/lab/host/dmz-esx-01/dmz-esx-01"][1].id,)
    assert paths["/lab/vm/prod-vms/prod-web-01"][1].resource_pool_id == prod_pool.id


def test_inventory_is_read_in_a_bounded_number_of_retrieves(connector, monkeypatch):
    calls = []
    real = vsphere._collect
    monkeypatch.setattr(vsphere, "_collect", lambda content, spec: calls.append(spec) or real(content, spec))
    connector.inventory()
    assert len(calls) == 1


def test_two_vms_of_one_name_in_two_folders_are_two_objects(connector, vsphere_check):
    name = _unique("twin")
    first = _clone_raw(vsphere_check, "tpl-debian12", name, _by_name(vsphere_check, vim.Folder, "prod-vms"))
    second = _clone_raw(vsphere_check, "tpl-debian12", name, _by_name(vsphere_check, vim.Folder, "dev-vms"))

    twins = [v for v in connector.inventory().vms if v.name == name]
    assert {v.id for v in twins} == {first._moId, second._moId}
    assert {v.path for v in twins} == {f"/lab/vm/prod-vms/{name}", f"/lab/vm/dev-vms/{name}"}
    assert connector.read_vm(first._moId).path == f"/lab/vm/prod-vms/{name}"
    assert connector.read_vm(second._moId).parent_id == _id(vsphere_check, vim.Folder, "dev-vms")


def test_a_renamed_vm_keeps_its_id(connector, vsphere_check):
    old, new = _unique("before"), _unique("after")
    vm = _clone_raw(vsphere_check, "tpl-debian12", old, _by_name(vsphere_check, vim.Folder, "dev-vms"))
    before = connector.read_vm(vm._moId)
    _wait(vm.Rename_Task(newName=new))

    after = connector.read_vm(vm._moId)
    assert (after.id, after.instance_uuid) == (before.id, before.instance_uuid)
    assert (before.name, after.name) == (old, new)
    assert after.path == f"/lab/vm/dev-vms/{new}"
    assert {v.id: v.name for v in connector.inventory().vms}[vm._moId] == new


def test_names_are_escaped_in_paths(connector, vsphere_check):
    name = _unique("a/b")
    folder = _by_name(vsphere_check, vim.Folder, "dev-vms").CreateFolder(name)
    found = {f.id: f for f in connector.inventory().folders}[folder._moId]
    assert found.name == name
    assert found.path == "/lab/vm/dev-vms/" + name.replace("/", "%2f")


def test_find_vm_by_uuid_and_read_vm(connector, vsphere_check):
    raw = _by_name(vsphere_check, vim.VirtualMachine, "dev-app-01")
    found = connector.find_vm_by_uuid(raw.config.instanceUuid)
    assert found is not None
    assert (found.id, found.name, found.host_id) == (raw._moId, "dev-app-01", raw.runtime.host._moId)
    assert found.datastore_ids == (_id(vsphere_check, vim.Datastore, "ds-dev"),)
    assert found.path == "/lab/vm/dev-vms/dev-app-01"
    assert [n.network_id for n in found.nics] == [_id(vsphere_check, vim.Network, "pg-dev")]
    # Case does not matter; an unknown uuid is None.
    assert connector.find_vm_by_uuid(raw.config.instanceUuid.upper()).id == raw._moId
    assert connector.find_vm_by_uuid(str(uuid.uuid4())) is None

    assert connector.read_vm(raw._moId) == found
    assert connector.read_vm("vm-999999") is None
    assert connector.read_vm(raw.runtime.host._moId) is None  # a host's id is no VM


def test_read_vm_of_a_removed_vm_is_none(connector, vsphere_check):
    vm = _clone_raw(vsphere_check, "tpl-debian12", _unique("doomed"), _by_name(vsphere_check, vim.Folder, "dev-vms"))
    assert connector.read_vm(vm._moId).id == vm._moId
    _wait(vm.Destroy_Task())
    assert connector.read_vm(vm._moId) is None
    assert vm._moId not in {v.id for v in connector.inventory().vms}


# -- clone --------------------------------------------------------------------


def test_clone_places_sizes_and_is_idempotent(connector, vsphere_check):
    args, result = _clone(connector, vsphere_check)

    assert not result.already_done
    assert result.task_id and result.task_id.startswith("task-")
    vm = _vm_by_uuid(vsphere_check, args["instance_uuid"])
    assert vm is not None, "no VM carries the requested instance uuid"
    assert result.object_id == vm._moId
    assert vm.name == args["name"]
    assert vm.config.instanceUuid == args["instance_uuid"]
    assert vm.runtime.host._moId == args["host_id"]
    assert [d._moId for d in vm.datastore] == [args["datastore_id"]]
    assert _card_networks(vsphere_check, vm) == list(args["networks"])
    assert vm.config.hardware.numCPU == 3
    assert vm.config.hardware.memoryMB == 3072
    assert not vm.config.template
    # As before: the VM folder of the template's datacenter.
    assert vm.parent._moId == _by_name(vsphere_check, vim.Datacenter, "lab").vmFolder._moId
    task = vim.Task(result.task_id, vsphere_check._stub)
    assert task.info.state == "success"

    again = connector.clone_vm(**args)
    assert again.already_done
    assert again.task_id is None
    assert again.object_id == vm._moId
    same = [v for v in _all(vsphere_check, vim.VirtualMachine) if v.name == args["name"]]
    assert len(same) == 1


def test_clone_of_a_two_card_template_connects_both_cards(connector, vsphere_check):
    networks = (_id(vsphere_check, vim.Network, "pg-prod"), _id(vsphere_check, vim.Network, "pg-dmz"))
    folder = _id(vsphere_check, vim.Folder, "prod-vms")
    args, result = _clone(
        connector,
        vsphere_check,
        template_id=_id(vsphere_check, vim.VirtualMachine, "tpl-rhel9"),
        networks=networks,
        folder_id=folder,
    )
    vm = _vm_by_uuid(vsphere_check, args["instance_uuid"])
    assert vm._moId == result.object_id
    assert _card_networks(vsphere_check, vm) == list(networks)
    assert vm.parent._moId == folder
    record = connector.read_vm(vm._moId)
    assert [n.network_id for n in record.nics] == list(networks)
    assert record.path == f"/lab/vm/prod-vms/{args['name']}"


def test_clone_with_the_wrong_number_of_networks_is_refused_before_any_task(fresh_vcsim):
    connector = VSphereConnector(fresh_vcsim.config)
    check = fresh_vcsim.connect()
    tpl = _id(check, vim.VirtualMachine, "tpl-rhel9")
    before = len(check.RetrieveContent().taskManager.recentTask or [])
    for networks in ((_id(check, vim.Network, "pg-prod"),), ()):
        with pytest.raises(
            OperationRejected, match=f"the template has 2 network cards; {len(networks)} networks given"
        ):
            _clone(connector, check, template_id=tpl, networks=networks)
    with pytest.raises(OperationRejected, match="the template has 0 network cards; 1 networks given"):
        _clone(connector, check, template_id=_id(check, vim.VirtualMachine, "tpl-win2022"))
    assert len(check.RetrieveContent().taskManager.recentTask or []) == before


def test_clone_onto_cluster_of_a_template_without_cards(connector, vsphere_check):
    args, result = _clone(
        connector,
        vsphere_check,
        template_id=_id(vsphere_check, vim.VirtualMachine, "tpl-win2022"),
        datastore_id=_id(vsphere_check, vim.Datastore, "ds-dev"),
        networks=(),
        cpus=2,
        memory_mb=2048,
        host_id=None,
        cluster_id=_id(vsphere_check, vim.ClusterComputeResource, "dev"),
    )
    vm = _vm_by_uuid(vsphere_check, args["instance_uuid"])
    assert vm._moId == result.object_id
    assert vm.runtime.host.parent.name == "dev"
    assert vm.resourcePool.owner.name == "dev"
    assert _cards(vm) == []
    assert (vm.config.hardware.numCPU, vm.config.hardware.memoryMB) == (2, 2048)


def test_clone_onto_a_standalone_host(connector, vsphere_check):
    args, _ = _clone(
        connector,
        vsphere_check,
        host_id=_id(vsphere_check, vim.HostSystem, "dmz-esx-01"),
        datastore_id=_id(vsphere_check, vim.Datastore, "ds-dmz"),
        networks=(_id(vsphere_check, vim.Network, "pg-dmz"),),
        cpus=1,
        memory_mb=1024,
    )
    vm = _vm_by_uuid(vsphere_check, args["instance_uuid"])
    assert vm.runtime.host.name == "dmz-esx-01"
    assert [d.name for d in vm.datastore] == ["ds-dmz"]
    assert _card_networks(vsphere_check, vm) == [_id(vsphere_check, vim.Network, "pg-dmz")]


def test_clone_name_clash_in_the_folder_is_rejected(connector, vsphere_check):
    new_uuid = str(uuid.uuid4())
    with pytest.raises(OperationRejected, match="prod-web-01"):
        _clone(
            connector,
            vsphere_check,
            name="prod-web-01",
            instance_uuid=new_uuid,
            folder_id=_id(vsphere_check, vim.Folder, "prod-vms"),
        )
    assert _vm_by_uuid(vsphere_check, new_uuid) is None
    assert len([v for v in _all(vsphere_check, vim.VirtualMachine) if v.name == "prod-web-01"]) == 1


# -- relocate -----------------------------------------------------------------


def test_relocate_and_relocate_again(connector, vsphere_check):
    args, cloned = _clone(connector, vsphere_check)
    vm_id = cloned.object_id
    esx01 = _id(vsphere_check, vim.HostSystem, "prod-esx-01")

    moved = connector.relocate_vm(vm_id=vm_id, host_id=esx01)
    assert not moved.already_done and moved.task_id.startswith("task-")
    vm = _vm_by_uuid(vsphere_check, args["instance_uuid"])
    assert vm.runtime.host._moId == esx01

    again = connector.relocate_vm(vm_id=vm_id, host_id=esx01)
    assert again.already_done and again.task_id is None

    # Across zones, with storage; the card stays where it is without a map.
    dmz, ds_dmz = _id(vsphere_check, vim.HostSystem, "dmz-esx-01"), _id(vsphere_check, vim.Datastore, "ds-dmz")
    moved = connector.relocate_vm(vm_id=vm_id, host_id=dmz, datastore_id=ds_dmz)
    assert not moved.already_done
    vm = _vm_by_uuid(vsphere_check, args["instance_uuid"])
    assert vm.runtime.host._moId == dmz
    assert [d._moId for d in vm.datastore] == [ds_dmz]
    assert vm.resourcePool.owner.name == "dmz-esx-01"
    assert _card_networks(vsphere_check, vm) == list(args["networks"])
    assert connector.relocate_vm(vm_id=vm_id, host_id=dmz, datastore_id=ds_dmz).already_done


def test_relocate_with_a_network_map_moves_host_and_cards_in_one_task(fresh_vcsim):
    connector = VSphereConnector(fresh_vcsim.config)
    check = fresh_vcsim.connect()
    dev, prod = _id(check, vim.Network, "pg-dev"), _id(check, vim.Network, "pg-prod")
    args, cloned = _clone(
        connector,
        check,
        template_id=_id(check, vim.VirtualMachine, "tpl-rhel9"),
        networks=(dev, dev),
        host_id=_id(check, vim.HostSystem, "dev-esx-01"),
        datastore_id=_id(check, vim.Datastore, "ds-dev"),
    )
    vm_id = cloned.object_id
    before = _tasks_on(check, vm_id)
    target = _id(check, vim.HostSystem, "prod-esx-01")

    moved = connector.relocate_vm(vm_id=vm_id, host_id=target, network_map={dev: prod})
    assert not moved.already_done
    new_tasks = _tasks_on(check, vm_id)[len(before) :]
    assert len(new_tasks) == 1 and new_tasks[0][0].startswith("relocate"), new_tasks
    assert new_tasks[0][1] == "success"
    assert vim.Task(moved.task_id, check._stub).info.entity._moId == vm_id
    vm = vim.VirtualMachine(vm_id, check._stub)
    assert vm.runtime.host._moId == target
    assert _card_networks(check, vm) == [prod, prod]
    assert [n.network_id for n in connector.read_vm(vm_id).nics] == [prod, prod]

    # Already there: no task at all.
    seen = len(_tasks_on(check, vm_id))
    again = connector.relocate_vm(vm_id=vm_id, host_id=target, network_map={dev: prod})
    assert again.already_done and again.task_id is None
    assert len(_tasks_on(check, vm_id)) == seen

    # Only the cards on a mapped network move; on the host already, the map
    # alone is work to do.
    dmz = _id(check, vim.Network, "pg-dmz")
    card_keys = [c.key for c in _cards(vm)]
    edit = vim.vm.device.VirtualDeviceSpec(operation="edit", device=_cards(vm)[1])
    edit.device.backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(
        deviceName="pg-dmz", network=vim.Network(dmz, check._stub)
    )
    _wait(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[edit])))
    moved = connector.relocate_vm(vm_id=vm_id, host_id=target, network_map={prod: dev})
    assert not moved.already_done
    assert _card_networks(check, vm) == [dev, dmz]
    assert [c.key for c in _cards(vm)] == card_keys


def test_relocate_checks_the_cards_afterwards():
    """A server that reports the relocation done but leaves a card where it
    was (the simulator unpatched) is not taken at its word."""
    with VcsimProcess(plain_relocate=True) as lab:
        connector = VSphereConnector(lab.config)
        check = lab.connect()
        args, cloned = _clone(connector, check)
        prod, dmz = args["networks"][0], _id(check, vim.Network, "pg-dmz")
        target = _id(check, vim.HostSystem, "prod-esx-01")
        with pytest.raises(ConnectorError, match=f"is on {prod}, not {dmz}"):
            connector.relocate_vm(vm_id=cloned.object_id, host_id=target, network_map={prod: dmz})
        vm = vim.VirtualMachine(cloned.object_id, check._stub)
        assert vm.runtime.host._moId == target
        assert _card_networks(check, vm) == [prod]


# -- permissions --------------------------------------------------------------


def test_add_read_and_remove_permissions(connector, vsphere_check):
    alice = _unique("LAB\\alice")
    bob = _unique("LAB\\bob")
    cluster = _by_name(vsphere_check, vim.ClusterComputeResource, "prod")
    cid = cluster._moId

    granted = connector.add_permission(principal=alice, role="ReadOnly", entity_id=cid)
    assert not granted.already_done and granted.object_id == cid
    assert (alice, "ReadOnly", True) in _entity_permissions(vsphere_check, cluster)
    assert connector.add_permission(principal=alice, role="ReadOnly", entity_id=cid).already_done

    # A second principal on the same entity keeps the first one.
    connector.add_permission(principal=bob, role="VirtualMachineUser", entity_id=cid, propagate=False)
    seen = _entity_permissions(vsphere_check, cluster)
    assert {(alice, "ReadOnly", True), (bob, "VirtualMachineUser", False)} <= seen

    # Changing the role is not "already done".
    changed = connector.add_permission(principal=alice, role="VirtualMachinePowerUser", entity_id=cid)
    assert not changed.already_done
    seen = _entity_permissions(vsphere_check, cluster)
    assert (alice, "VirtualMachinePowerUser", True) in seen and (alice, "ReadOnly", True) not in seen

    listed = connector.permissions(cid)
    mine = {p.principal: p for p in listed if p.principal in (alice, bob)}
    assert mine[alice].role == "VirtualMachinePowerUser"
    assert (mine[alice].entity_name, mine[alice].entity_id) == ("prod", cid)
    assert mine[bob].propagate is False and mine[bob].is_group is False
    everything = connector.permissions()
    assert {alice, bob} <= {p.principal for p in everything}
    root = vsphere_check.RetrieveContent().rootFolder._moId
    assert any(p.principal == "root" and p.role == "Admin" and p.entity_id == root for p in everything)

    removed = connector.remove_permission(principal=alice, entity_id=cid)
    assert not removed.already_done
    seen = _entity_permissions(vsphere_check, cluster)
    assert all(p[0] != alice for p in seen)
    assert (bob, "VirtualMachineUser", False) in seen
    assert connector.remove_permission(principal=alice, entity_id=cid).already_done
    connector.remove_permission(principal=bob, entity_id=cid)
    assert all(p[0] != bob for p in _entity_permissions(vsphere_check, cluster))


@pytest.mark.parametrize(
    ("vimtype", "name"),
    [
        (vim.VirtualMachine, "dmz-proxy-01"),
        (vim.HostSystem, "dev-esx-02"),
        (vim.Datacenter, "lab"),
        (vim.Folder, "dev-vms"),
        (vim.Folder, "Datacenters"),  # the root folder
    ],
)
def test_permissions_on_each_kind_of_entity(connector, vsphere_check, vimtype, name):
    principal = _unique("LAB\\ops")
    entity = _by_name(vsphere_check, vimtype, name) if name != "Datacenters" else vsphere_check.content.rootFolder
    connector.add_permission(principal=principal, role="ReadOnly", entity_id=entity._moId)
    assert (principal, "ReadOnly", True) in _entity_permissions(vsphere_check, entity)
    assert [(p.entity_id, p.entity_name) for p in connector.permissions(entity._moId) if p.principal == principal] == [
        (entity._moId, name)
    ]
    connector.remove_permission(principal=principal, entity_id=entity._moId)
    assert all(p[0] != principal for p in _entity_permissions(vsphere_check, entity))


def test_permissions_on_a_resource_pool(connector, vsphere_check):
    principal = _unique("LAB\\pool")
    pool = _by_name(vsphere_check, vim.ClusterComputeResource, "dev").resourcePool
    connector.add_permission(principal=principal, role="ReadOnly", entity_id=pool._moId)
    assert (principal, "ReadOnly", True) in _entity_permissions(vsphere_check, pool)
    connector.remove_permission(principal=principal, entity_id=pool._moId)
    assert all(p[0] != principal for p in _entity_permissions(vsphere_check, pool))


# -- errors -------------------------------------------------------------------


def test_unknown_ids_are_not_found(connector, vsphere_check):
    vm = _id(vsphere_check, vim.VirtualMachine, "prod-web-01")
    host = _id(vsphere_check, vim.HostSystem, "prod-esx-01")
    with pytest.raises(ObjectNotFound, match="vm-999999") as err:
        connector.relocate_vm(vm_id="vm-999999", host_id=host)
    assert (err.value.kind, err.value.id) == ("VM", "vm-999999")
    with pytest.raises(ObjectNotFound, match="host-999999") as err:
        connector.relocate_vm(vm_id=vm, host_id="host-999999")
    assert err.value.kind == "host"
    for field, kind in (
        ("template_id", "template"),
        ("datastore_id", "datastore"),
        ("host_id", "host"),
    ):
        with pytest.raises(ObjectNotFound) as err:
            _clone(connector, vsphere_check, **{field: f"no-such-{field}"})
        assert (err.value.kind, err.value.id) == (kind, f"no-such-{field}")
    with pytest.raises(ObjectNotFound) as err:
        _clone(connector, vsphere_check, networks=("network-999999",))
    assert (err.value.kind, err.value.id) == ("network", "network-999999")
    with pytest.raises(ObjectNotFound) as err:
        connector.add_permission(principal="x", role="ReadOnly", entity_id="group-999999")
    assert err.value.id == "group-999999"
    cluster = _id(vsphere_check, vim.ClusterComputeResource, "prod")
    with pytest.raises(ObjectNotFound) as err:
        connector.add_permission(principal="x", role="NoSuchRole", entity_id=cluster)
    assert (err.value.kind, err.value.id) == ("role", "NoSuchRole")


def test_names_are_not_ids(connector, vsphere_check):
    """A name never stands in for an id, even where it would be unique."""
    host = _id(vsphere_check, vim.HostSystem, "prod-esx-01")
    with pytest.raises(ObjectNotFound):
        connector.relocate_vm(vm_id="prod-web-01", host_id=host)
    with pytest.raises(ObjectNotFound):
        connector.relocate_vm(vm_id=_id(vsphere_check, vim.VirtualMachine, "prod-web-01"), host_id="prod-esx-01")
    with pytest.raises(ObjectNotFound):
        connector.add_permission(principal="x", role="ReadOnly", entity_id="prod")
    with pytest.raises(ObjectNotFound):
        _clone(connector, vsphere_check, networks=("pg-prod",))


def test_an_id_of_the_wrong_type_is_not_found(connector, vsphere_check):
    vm = _id(vsphere_check, vim.VirtualMachine, "prod-web-01")
    host = _id(vsphere_check, vim.HostSystem, "prod-esx-01")
    ds = _id(vsphere_check, vim.Datastore, "ds-prod")
    net = _id(vsphere_check, vim.Network, "pg-prod")
    cluster = _id(vsphere_check, vim.ClusterComputeResource, "prod")
    with pytest.raises(ObjectNotFound) as err:
        connector.relocate_vm(vm_id=host, host_id=host)
    assert (err.value.kind, err.value.id) == ("VM", host)
    with pytest.raises(ObjectNotFound) as err:
        connector.relocate_vm(vm_id=vm, host_id=cluster)
    assert (err.value.kind, err.value.id) == ("host", cluster)
    with pytest.raises(ObjectNotFound):
        connector.relocate_vm(vm_id=vm, host_id=host, datastore_id=net)
    with pytest.raises(ObjectNotFound):
        connector.relocate_vm(vm_id=vm, host_id=host, network_map={net: ds})
    with pytest.raises(ObjectNotFound) as err:
        _clone(connector, vsphere_check, template_id=host)
    assert err.value.kind == "template"
    with pytest.raises(ObjectNotFound):
        _clone(connector, vsphere_check, host_id=None, cluster_id=host)
    with pytest.raises(ObjectNotFound):
        _clone(connector, vsphere_check, folder_id=vm)
    with pytest.raises(ObjectNotFound):
        connector.add_permission(principal="x", role="ReadOnly", entity_id=ds)  # not a permission entity here
    with pytest.raises(ObjectNotFound):
        connector.permissions(net)
    assert connector.read_vm(host) is None
    # Nothing moved.
    assert _by_name(vsphere_check, vim.VirtualMachine, "prod-web-01").runtime.host._moId == host


# -- vcsim's default inventory ----------------------------------------------------


def test_default_inventory_with_distributed_port_groups(default_vcsim):
    connector = VSphereConnector(default_vcsim.config)
    check = default_vcsim.connect()
    inv = connector.inventory()

    assert [d.path for d in inv.datacenters] == ["/DC0"]
    assert {"DC0_C0"} <= {c.name for c in inv.clusters}
    hosts = {h.name: h for h in inv.hosts}
    assert hosts["DC0_H0"].cluster_id is None
    assert hosts["DC0_C0_H0"].path == "/DC0/host/DC0_C0/DC0_C0_H0"
    assert "LocalDS_0" in {d.name for d in inv.datastores}
    networks = {n.name: n for n in inv.networks}
    pg = networks["DC0_DVPG0"]
    assert pg.path == "/DC0/network/DC0_DVPG0"
    assert "VM Network" in networks
    switches = {s._moId for s in _all(check, vim.DistributedVirtualSwitch)}
    assert switches and not switches & {n.id for n in inv.networks}
    assert inv.resource_pools and all(p.host_ids for p in inv.resource_pools)

    vms = [v for v in inv.vms if v.nics]
    assert vms
    for vm in vms:
        assert [n.network_id for n in vm.nics] == _card_networks(check, vim.VirtualMachine(vm.id, check._stub))
        assert vm.nics[0].network_id == pg.id
        assert vm.path == _path(check, vim.VirtualMachine(vm.id, check._stub))
    entities = {o._moId: o for o in _all(check, vim.ManagedEntity)}
    for kind, items in _kinds(inv).items():
        for item in items:
            if item.id == inv.root_folder_id:
                continue
            obj = entities[item.id]
            assert item.path == _path(check, obj), (kind, item)
            parent = obj.parent if obj.parent is not None else getattr(obj, "parentVApp", None)
            assert item.parent_id == (parent._moId if parent is not None else None), (kind, item)


def test_default_inventory_relocate_with_a_network_map(default_vcsim):
    connector = VSphereConnector(default_vcsim.config)
    check = default_vcsim.connect()
    inv = connector.inventory()
    networks = {n.name: n.id for n in inv.networks}
    pg, std = networks["DC0_DVPG0"], networks["VM Network"]
    vm = next(v for v in inv.vms if v.name == "DC0_C0_RP0_VM0")
    cluster_hosts = sorted(h.id for h in inv.hosts if h.cluster_id is not None)
    target = next(h for h in cluster_hosts if h != vm.host_id)
    raw = vim.VirtualMachine(vm.id, check._stub)
    before = len(_tasks_on(check, vm.id))

    moved = connector.relocate_vm(vm_id=vm.id, host_id=target, network_map={pg: std})
    assert not moved.already_done
    assert raw.runtime.host._moId == target
    assert _card_networks(check, raw) == [std]
    assert len(_tasks_on(check, vm.id)) == before + 1
    assert connector.relocate_vm(vm_id=vm.id, host_id=target, network_map={pg: std}).already_done

    # And back onto the distributed port group: a port backing on its switch.
    back = connector.relocate_vm(vm_id=vm.id, host_id=vm.host_id, network_map={std: pg})
    assert not back.already_done
    (card,) = _cards(raw)
    assert isinstance(card.backing, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo)
    dvs = vim.dvs.DistributedVirtualPortgroup(pg, check._stub).config.distributedVirtualSwitch
    assert card.backing.port.switchUuid == dvs.uuid
    assert [n.network_id for n in connector.read_vm(vm.id).nics] == [pg]
    assert raw.runtime.host._moId == vm.host_id


def test_default_inventory_clone_onto_a_distributed_port_group(default_vcsim):
    connector = VSphereConnector(default_vcsim.config)
    check = default_vcsim.connect()
    inv = connector.inventory()
    networks = {n.name: n.id for n in inv.networks}
    template = next(v for v in inv.vms if v.name == "DC0_H0_VM0")
    args = dict(
        template_id=template.id,
        name=_unique("dv-clone"),
        datastore_id=template.datastore_ids[0],
        networks=(networks["VM Network"],),
        cpus=1,
        memory_mb=512,
        instance_uuid=str(uuid.uuid4()),
        host_id=template.host_id,
    )
    result = connector.clone_vm(**args)
    assert _card_networks(check, vim.VirtualMachine(result.object_id, check._stub)) == [networks["VM Network"]]
    result = connector.clone_vm(
        **{
            **args,
            "name": _unique("dv-clone"),
            "instance_uuid": str(uuid.uuid4()),
            "networks": (networks["DC0_DVPG0"],),
        }
    )
    assert _card_networks(check, vim.VirtualMachine(result.object_id, check._stub)) == [networks["DC0_DVPG0"]]


# -- connections ------------------------------------------------------------------


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
        check = lab.connect()
        started = time.monotonic()
        args, result = _clone(connector, check)
        elapsed = time.monotonic() - started
        assert elapsed >= delay_ms / 1000
        assert _vm_by_uuid(check, args["instance_uuid"])._moId == result.object_id
        # Other calls are not delayed.
        started = time.monotonic()
        connector.relocate_vm(vm_id=result.object_id, host_id=_id(check, vim.HostSystem, "prod-esx-01"))
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
