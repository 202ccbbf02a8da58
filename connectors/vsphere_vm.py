"""vSphere: a VM's power, size, snapshots and removal, as a mixin the
VSphereConnector uses, and the VM details every inventory read carries
(size, hot-add settings, disks, snapshots).

Every operation takes the VM by managed object id and the instance UUID the
ticket bound: the VM is found by its instance UUID and must sit at that id,
or nothing is sent. The mixin relies on its host class for the session and
the shared look-ups (_call, _resolve, _wait, _find_vm_by_uuid, _vm_record,
_networks, _nic_backing)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from pyVmomi import vim, vmodl

from .base import (
    POWER_ACTIONS,
    Disk,
    ObjectNotFound,
    OperationRejected,
    OperationResult,
    Snapshot,
    TaskCallback,
    vm_configuration,
)

log = logging.getLogger(__name__)

# What the inventory reads of each VM beyond its place and cards.
VM_DETAIL_PROPS = [
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "config.cpuHotAddEnabled",
    "config.cpuHotRemoveEnabled",
    "config.memoryHotAddEnabled",
    "snapshot",
]

VM_OPERATIONS = frozenset(
    {"power_vm", "destroy_vm", "reconfigure_vm", "create_snapshot", "revert_snapshot", "remove_snapshot"}
)

# Seconds between two looks at a VM that is shutting down.
POWER_POLL_SECONDS = 0.5


def _moid(obj: Any) -> str:
    return obj._moId


def _snapshot_trees(roots: Iterable[Any], parent: str | None = None) -> Iterator[tuple[Any, str | None]]:
    for tree in roots or ():
        yield tree, parent
        yield from _snapshot_trees(tree.childSnapshotList, _moid(tree.snapshot))


def _snapshots(info: Any) -> tuple[Snapshot, ...]:
    if info is None:
        return ()
    return tuple(
        Snapshot(
            id=_moid(tree.snapshot),
            name=str(tree.name or ""),
            description=str(tree.description or ""),
            created=tree.createTime.isoformat() if tree.createTime else "",
            parent_id=parent,
            power_state=str(tree.state or ""),
        )
        for tree, parent in _snapshot_trees(info.rootSnapshotList)
    )


def _disks(devices: Iterable[Any]) -> tuple[Disk, ...]:
    out = []
    for d in devices or ():
        if not isinstance(d, vim.vm.device.VirtualDisk):
            continue
        backing = d.backing
        datastore = getattr(backing, "datastore", None)
        out.append(
            Disk(
                key=int(d.key),
                label=str(getattr(d.deviceInfo, "label", "") or ""),
                capacity_kb=int(d.capacityInKB or 0),
                datastore_id=_moid(datastore) if datastore is not None else None,
                file=str(getattr(backing, "fileName", "") or ""),
            )
        )
    return tuple(out)


def vm_details(values: dict[str, Any]) -> dict[str, Any]:
    """The VirtualMachine fields read from VM_DETAIL_PROPS (and its devices)."""
    info = values.get("snapshot")
    current = getattr(info, "currentSnapshot", None) if info is not None else None
    return {
        "cpus": int(values.get("config.hardware.numCPU") or 0),
        "memory_mb": int(values.get("config.hardware.memoryMB") or 0),
        "cpu_hot_add": bool(values.get("config.cpuHotAddEnabled")),
        "cpu_hot_remove": bool(values.get("config.cpuHotRemoveEnabled")),
        "memory_hot_add": bool(values.get("config.memoryHotAddEnabled")),
        "disks": _disks(values.get("config.hardware.device")),
        "snapshots": _snapshots(info),
        "current_snapshot_id": _moid(current) if current is not None else None,
    }


def _done(result: str, vm_id: str) -> OperationResult:
    return OperationResult(task_id=None, result=result, already_done=True, object_id=vm_id)


class VSphereVmOperations:
    """power_vm, destroy_vm, reconfigure_vm and the snapshot operations."""

    # -- finding the approved VM -----------------------------------------

    def _approved_vm(self, content: Any, vm_id: str, instance_uuid: str, props: list[str]) -> tuple[Any, dict] | None:
        """The VM carrying `instance_uuid`, with `props`, or None when no VM
        carries it. OperationRejected when it is at another id than `vm_id`."""
        found = self._find_vm_by_uuid(content, instance_uuid)
        if found is None:
            return None
        if _moid(found) != vm_id:
            raise OperationRejected(
                f"the VM with instance UUID {instance_uuid} is {_moid(found)}, not {vm_id}; nothing was changed"
            )
        return self._resolve(content, (vim.VirtualMachine,), vm_id, "VM", props)

    def _require_vm(self, content: Any, vm_id: str, instance_uuid: str, props: list[str]) -> tuple[Any, dict]:
        found = self._approved_vm(content, vm_id, instance_uuid, props)
        if found is None:
            raise ObjectNotFound("VM", f"{vm_id} (instance UUID {instance_uuid})")
        return found

    def _wait_by_state(self, content: Any, task: Any, on_task: TaskCallback | None) -> None:
        """Wait for a task by its state alone. vcsim names a snapshot as the
        entity of a snapshot's revert and removal tasks, which a whole TaskInfo
        cannot carry (its entity is a ManagedEntity), so only the state and
        the error are read."""
        if on_task is not None:
            on_task(_moid(task))
        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=task)],
            propSet=[pc.PropertySpec(type=vim.Task, pathSet=["info.state", "info.error"], all=False)],
        )
        delay = 0.05
        while True:
            [found] = content.propertyCollector.RetrieveContents([spec])
            values = {p.name: p.val for p in found.propSet or ()}
            if values.get("info.state") == "success":
                return
            if values.get("info.state") == "error":
                error = values.get("info.error")
                message = getattr(error, "localizedMessage", "") or type(getattr(error, "fault", error)).__name__
                raise OperationRejected(f"vSphere task {_moid(task)} failed: {message}")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _power_state(self, content: Any, vm: Any) -> str:
        _, values = self._resolve(content, (vim.VirtualMachine,), _moid(vm), "VM", ["runtime.powerState"])
        return str(values.get("runtime.powerState") or "")

    def _wait_off(self, content: Any, vm: Any, timeout: float) -> bool:
        """Whether the VM is off within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if self._power_state(content, vm) == "poweredOff":
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POWER_POLL_SECONDS)

    def _hard_off(self, content: Any, vm: Any, on_task: TaskCallback | None) -> None:
        try:
            self._wait(content, vm.PowerOffVM_Task(), on_task)
        except OperationRejected:
            if self._power_state(content, vm) != "poweredOff":  # off meanwhile counts
                raise

    def _power_down(self, content: Any, vm: Any, timeout: float, on_task: TaskCallback | None) -> str:
        """Off, the guest's way first: ask it to shut down, wait, then power
        off hard. Says in words how it went."""
        try:
            vm.ShutdownGuest()
        except (vim.fault.ToolsUnavailable, vim.fault.InvalidState, vim.fault.TaskInProgress) as exc:
            self._hard_off(content, vm, on_task)
            return f"the guest could not be asked to shut down ({type(exc).__name__}); powered off"
        if self._wait_off(content, vm, timeout):
            return "shut down by its guest"
        self._hard_off(content, vm, on_task)
        return f"the guest did not shut down within {timeout:g} s; powered off"

    # -- power ------------------------------------------------------------

    def power_vm(
        self,
        *,
        vm_id: str,
        instance_uuid: str,
        action: str,
        timeout_seconds: float,
        on_task: TaskCallback | None = None,
    ) -> OperationResult:
        if action not in POWER_ACTIONS:
            raise OperationRejected(f"unknown power action {action!r} (one of {', '.join(POWER_ACTIONS)})")

        def act(content: Any) -> OperationResult:
            vm, values = self._require_vm(content, vm_id, instance_uuid, ["name", "runtime.powerState"])
            state = str(values.get("runtime.powerState") or "")
            label = f"VM {values.get('name')!r} ({vm_id})"
            if action == "on":
                if state == "poweredOn":
                    return _done(f"{label} is already on", vm_id)
                task = vm.PowerOnVM_Task()
                self._wait(content, task, on_task)
                return OperationResult(task_id=_moid(task), result=f"powered {label} on", object_id=vm_id)
            if action == "reset":
                if state != "poweredOn":
                    raise OperationRejected(f"{label} is {state}; only a VM that is on can be reset")
                task = vm.ResetVM_Task()
                self._wait(content, task, on_task)
                return OperationResult(task_id=_moid(task), result=f"reset {label}", object_id=vm_id)
            if state == "poweredOff":
                return _done(f"{label} is already off", vm_id)
            if action == "off":
                task = vm.PowerOffVM_Task()
                self._wait(content, task, on_task)
                return OperationResult(task_id=_moid(task), result=f"powered {label} off", object_id=vm_id)
            vm.ShutdownGuest()  # no task: the guest does it, or not
            if not self._wait_off(content, vm, timeout_seconds):
                raise OperationRejected(
                    f"{label} was asked to shut down but is still on after {timeout_seconds:g} s; it was not powered "
                    "off hard (file an 'off' ticket for that)"
                )
            return OperationResult(task_id=None, result=f"{label} shut down by its guest", object_id=vm_id)

        return self._call(act, write=True)

    # -- destroy ----------------------------------------------------------

    def destroy_vm(
        self, *, vm_id: str, instance_uuid: str, shutdown_timeout_seconds: float, on_task: TaskCallback | None = None
    ) -> OperationResult:
        def destroy(content: Any) -> OperationResult:
            found = self._approved_vm(content, vm_id, instance_uuid, ["name", "runtime.powerState"])
            if found is None:
                return _done(f"no VM has instance UUID {instance_uuid}: {vm_id} is already gone", vm_id)
            vm, values = found
            record = self._vm_record(content, vm)
            if record.is_template:
                raise OperationRejected(f"{record.name} ({vm_id}) is a template; templates are not destroyed")
            last = vm_configuration(record)
            notes = []
            if str(values.get("runtime.powerState")) != "poweredOff":
                if str(values.get("runtime.powerState")) == "suspended":
                    self._hard_off(content, vm, on_task)
                    notes.append("it was suspended; powered off")
                else:
                    notes.append(self._power_down(content, vm, shutdown_timeout_seconds, on_task))
            task = vm.Destroy_Task()
            self._wait(content, task, on_task)
            words = f"destroyed VM {record.name!r} ({vm_id}, {record.path})"
            if notes:
                words += f" ({'; '.join(notes)})"
            return OperationResult(
                task_id=_moid(task), result=words, object_id=vm_id, details={"last_configuration": last}
            )

        return self._call(destroy, write=True)

    # -- reconfigure ------------------------------------------------------

    def reconfigure_vm(
        self,
        *,
        vm_id: str,
        instance_uuid: str,
        cpus: int | None = None,
        memory_mb: int | None = None,
        add_network_id: str | None = None,
        remove_nic_key: int | None = None,
        on_task: TaskCallback | None = None,
    ) -> OperationResult:
        props = ["name", "config.hardware.numCPU", "config.hardware.memoryMB", "config.hardware.device"]

        def reconfigure(content: Any) -> OperationResult:
            vm, values = self._require_vm(content, vm_id, instance_uuid, props)
            label = f"VM {values.get('name')!r} ({vm_id})"
            spec = vim.vm.ConfigSpec()
            words = []
            if cpus is not None and cpus != values.get("config.hardware.numCPU"):
                spec.numCPUs = int(cpus)
                words.append(f"{values.get('config.hardware.numCPU')} → {cpus} CPUs")
            if memory_mb is not None and memory_mb != values.get("config.hardware.memoryMB"):
                spec.memoryMB = int(memory_mb)
                words.append(f"{values.get('config.hardware.memoryMB')} → {memory_mb} MB")
            changes = []
            cards = [
                d
                for d in values.get("config.hardware.device") or ()
                if isinstance(d, vim.vm.device.VirtualEthernetCard)
            ]
            if remove_nic_key is not None:
                card = next((c for c in cards if int(c.key) == int(remove_nic_key)), None)
                if card is not None:
                    changes.append(
                        vim.vm.device.VirtualDeviceSpec(
                            operation=vim.vm.device.VirtualDeviceSpec.Operation.remove, device=card
                        )
                    )
                    words.append(f"removed {card.deviceInfo.label}")
            if add_network_id:
                network, net_values = self._networks(content, [add_network_id])[add_network_id]
                card = vim.vm.device.VirtualVmxnet3(
                    key=-1,
                    backing=self._nic_backing(content, network, net_values),
                    addressType="generated",
                    # vCenter's own label; simulators make one up otherwise.
                    deviceInfo=vim.Description(
                        label=f"Network adapter {len(cards) + 1}", summary=net_values.get("name", "")
                    ),
                    connectable=vim.vm.device.VirtualDevice.ConnectInfo(startConnected=True, allowGuestControl=True),
                )
                changes.append(
                    vim.vm.device.VirtualDeviceSpec(
                        operation=vim.vm.device.VirtualDeviceSpec.Operation.add, device=card
                    )
                )
                words.append(f"added a card on {net_values.get('name')!r} ({add_network_id})")
            if not words:
                return _done(f"{label} already has that configuration", vm_id)
            if changes:
                spec.deviceChange = changes
            task = vm.ReconfigVM_Task(spec=spec)
            self._wait(content, task, on_task)
            return OperationResult(
                task_id=_moid(task), result=f"reconfigured {label}: {', '.join(words)}", object_id=vm_id
            )

        return self._call(reconfigure, write=True)

    # -- snapshots --------------------------------------------------------

    def _snapshot_tree(self, content: Any, vm_id: str, instance_uuid: str, snapshot_id: str) -> tuple[Any, Any, dict]:
        """(VM, the snapshot's tree entry or None, the VM's values)."""
        vm, values = self._require_vm(content, vm_id, instance_uuid, ["name", "snapshot"])
        info = values.get("snapshot")
        roots = info.rootSnapshotList if info is not None else ()
        entry = next((tree for tree, _ in _snapshot_trees(roots) if _moid(tree.snapshot) == snapshot_id), None)
        return vm, entry, values

    def create_snapshot(
        self,
        *,
        vm_id: str,
        instance_uuid: str,
        name: str,
        description: str,
        memory: bool,
        on_task: TaskCallback | None = None,
    ) -> OperationResult:
        def create(content: Any) -> OperationResult:
            vm, values = self._require_vm(content, vm_id, instance_uuid, ["name", "snapshot"])
            label = f"VM {values.get('name')!r} ({vm_id})"
            for snap in _snapshots(values.get("snapshot")):
                if snap.name == name and snap.description == description:
                    return OperationResult(
                        task_id=None,
                        result=f"{label} already has snapshot {name!r} ({snap.id})",
                        already_done=True,
                        object_id=snap.id,
                    )
            task = vm.CreateSnapshot_Task(name=name, description=description, memory=bool(memory), quiesce=False)
            snapshot = self._wait(content, task, on_task)
            snapshot_id = _moid(snapshot) if snapshot is not None else None
            memory_words = "with its memory" if memory else "without memory"
            return OperationResult(
                task_id=_moid(task),
                result=f"took snapshot {name!r} ({snapshot_id}) of {label}, {memory_words}",
                object_id=snapshot_id,
            )

        return self._call(create, write=True)

    def revert_snapshot(
        self, *, vm_id: str, instance_uuid: str, snapshot_id: str, on_task: TaskCallback | None = None
    ) -> OperationResult:
        def revert(content: Any) -> OperationResult:
            _, entry, values = self._snapshot_tree(content, vm_id, instance_uuid, snapshot_id)
            if entry is None:
                raise ObjectNotFound("snapshot", f"{snapshot_id} of VM {vm_id}")
            task = entry.snapshot.RevertToSnapshot_Task()
            self._wait_by_state(content, task, on_task)
            return OperationResult(
                task_id=_moid(task),
                result=f"reverted VM {values.get('name')!r} ({vm_id}) to snapshot {entry.name!r} ({snapshot_id})",
                object_id=vm_id,
            )

        return self._call(revert, write=True)

    def remove_snapshot(
        self, *, vm_id: str, instance_uuid: str, snapshot_id: str, on_task: TaskCallback | None = None
    ) -> OperationResult:
        def remove(content: Any) -> OperationResult:
            _, entry, values = self._snapshot_tree(content, vm_id, instance_uuid, snapshot_id)
            label = f"VM {values.get('name')!r} ({vm_id})"
            if entry is None:
                return _done(f"{label} has no snapshot {snapshot_id}: already deleted", vm_id)
            task = entry.snapshot.RemoveSnapshot_Task(removeChildren=False)
            self._wait_by_state(content, task, on_task)
            return OperationResult(
                task_id=_moid(task),
                result=f"deleted snapshot {entry.name!r} ({snapshot_id}) of {label}",
                object_id=vm_id,
            )

        return self._call(remove, write=True)
