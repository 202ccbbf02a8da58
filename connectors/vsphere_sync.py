"""The vSphere inventory feed (connectors.feed): a property filter over the
whole inventory followed with WaitForUpdatesEx, permissions with one
RetrieveAllPermissions, events from an event history collector.

The feed keeps the properties of everything but VMs (a few hundred objects
at 20,000 VMs). After each batch of updates it reads the VMs the batch
touched again, by id, in one call, and derives only them, with the same
derivation the connector's own inventory() uses over every container (paths
and networks come out right); a batch that touches anything else (a folder
renamed, a host moved) reaches other objects' paths and zones: then it reads
everything again. Keeping no VM between batches is what keeps the process
small: the first answer (vcsim sends the whole estate in one) is parsed,
stored and dropped whole, so its memory goes back to the system instead of
being pinned by the few objects a cache would keep from it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pyVmomi import vim, vmodl

from connectors.base import Inventory, Permission
from connectors.feed import Batch, Event, FeedLost, InventoryFeed
from connectors.vsphere import (
    _VM_PROPS,
    INVENTORY_PROPS,
    _ethernet_cards,
    _login,
    _logout,
    _moid,
    _Session,
    _translate_errors,
    build_inventory,
    inventory_filter_spec,
)

log = logging.getLogger(__name__)

DEVICES = "config.hardware.device"
# Updates per WaitForUpdatesEx answer; a larger estate comes in several.
MAX_OBJECT_UPDATES = 1000
EVENT_PAGE = 200


class VSphereFeed(InventoryFeed):
    def __init__(self, config):
        super().__init__(config)
        self._session: _Session | None = None
        self._collector: Any = None
        self._filter: Any = None
        self._events: Any = None
        # Everything but VMs: moid -> (managed object, its properties).
        self._objects: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._roles: list[Any] = []
        self._version = ""
        # What the updates applied since the last batch touched (VMs by moid).
        self._touched: dict[str, Any] = {}
        self._left: set[str] = set()
        self._reaching = False
        self._following = False  # past the first read: VMs are read again per batch, not kept

    def __repr__(self) -> str:
        return f"<VSphereFeed {self.config.url}>"

    # -- following ----------------------------------------------------------

    def open(self) -> tuple[Inventory, str]:
        self.close()
        self._following = False
        with _translate_errors(self.config):
            self._session = _login(self.config)
            content = self._session.content
            self._collector = content.propertyCollector.CreatePropertyCollector()
            root = content.rootFolder
            view = content.viewManager.CreateContainerView(root, list(INVENTORY_PROPS), True)
            self._filter = self._collector.CreateFilter(inventory_filter_spec(view, root), partialUpdates=False)
            self._roles = list(content.authorizationManager.roleList or [])
            self._objects = {}
            self._version = ""
            truncated = True
            while truncated:  # the first answers hold everything, in pages (vcsim: in one)
                update = self._collector.WaitForUpdatesEx(self._version, self._options(0))
                truncated = bool(update is not None and update.truncated)
                if update is not None:
                    self._apply(update)
                del update  # a page of the whole estate: not kept while the next is parsed
            inventory = self._inventory(self._objects.values())
        self._forget()
        self._objects = {m: e for m, e in self._objects.items() if not isinstance(e[0], vim.VirtualMachine)}
        self._following = True
        return inventory, self._version

    def wait(self, seconds: float) -> Batch | None:
        if self._collector is None:
            raise FeedLost("the feed is not open")
        changed = False
        with _translate_errors(self.config):
            try:
                update = self._collector.WaitForUpdatesEx(self._version, self._options(max(1, int(seconds))))
                while update is not None:
                    self._apply(update)
                    changed = True
                    if not update.truncated:
                        break
                    update = self._collector.WaitForUpdatesEx(self._version, self._options(0))
            except vmodl.query.InvalidCollectorVersion as exc:
                raise FeedLost("the hypervisor lost the update version") from exc
            except vmodl.fault.RequestCanceled as exc:
                raise FeedLost("the update wait was cancelled") from exc
        return self._batch() if changed else None

    def _batch(self) -> Batch:
        touched, left, reaching = self._touched, self._left, self._reaching
        self._forget()
        if reaching:
            inventory = self._inventory([*self._objects.values(), *self._read_vms(self._all_vms())])
            return Batch(inventory=inventory, version=self._version, removed=tuple(sorted(left)), complete=True)
        # Every container (paths, port groups, clusters) and the touched VMs.
        derived = self._inventory([*self._objects.values(), *self._read_vms(touched.values())])
        return Batch(
            inventory=Inventory(root_folder_id=derived.root_folder_id, vms=derived.vms, roles=derived.roles),
            version=self._version,
            removed=tuple(sorted(left)),
        )

    def _read_vms(self, vms: Iterable[Any], props: list[str] = _VM_PROPS) -> list[tuple[Any, dict[str, Any]]]:
        """The VMs' properties (as the filter reports them), in one call (in
        pages); a VM gone meanwhile is left out (its leave comes next)."""
        pc = vmodl.query.PropertyCollector
        vms = list(vms)
        if not vms:
            return []
        spec = pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=vm, skip=False) for vm in vms],
            propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=props, all=False)],
            reportMissingObjectsInResults=True,
        )
        out = []
        with _translate_errors(self.config):
            result = self._collector.RetrievePropertiesEx([spec], pc.RetrieveOptions(maxObjects=MAX_OBJECT_UPDATES))
            while result is not None:
                for item in result.objects or ():
                    if not item.missingSet or item.propSet:
                        out.append((item.obj, {p.name: _slim(p.name, p.val) for p in item.propSet or ()}))
                if not result.token:
                    break
                result = self._collector.ContinueRetrievePropertiesEx(result.token)
        return out

    def _all_vms(self) -> list[Any]:
        """Every VM in the inventory (references only)."""
        content = self._content()
        with _translate_errors(self.config):
            view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
            try:
                return list(view.view or ())
            finally:
                view.DestroyView()

    def _forget(self) -> None:
        self._touched, self._left, self._reaching = {}, set(), False

    @staticmethod
    def _options(seconds: int) -> Any:
        return vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=seconds, maxObjectUpdates=MAX_OBJECT_UPDATES)

    def _apply(self, update: Any) -> None:
        self._version = str(update.version or "")
        for filter_update in update.filterSet or ():
            for item in filter_update.objectSet or ():
                moid = _moid(item.obj)
                is_vm = isinstance(item.obj, vim.VirtualMachine)
                self._reaching |= not is_vm
                if item.kind == "leave":
                    self._objects.pop(moid, None)
                    self._touched.pop(moid, None)
                    self._left.add(moid)
                    continue
                self._left.discard(moid)
                if is_vm and self._following:  # read again, whole, for the batch
                    self._touched[moid] = item.obj
                    continue
                obj, values = self._objects.get(moid, (item.obj, {}))
                if item.kind == "enter":
                    values = {}
                for change in item.changeSet or ():
                    if change.op in ("remove", "indirectRemove"):
                        values.pop(change.name, None)
                    else:
                        values[change.name] = _slim(change.name, change.val)
                self._objects[moid] = (obj, values)

    def _inventory(self, entries: Iterable[tuple[Any, dict[str, Any]]]) -> Inventory:
        return build_inventory(self._root_id(), entries, self._roles)

    def _root_id(self) -> str:
        root = self._session.content.rootFolder if self._session else None
        return _moid(root) if root is not None else ""

    # -- permissions and events ---------------------------------------------

    def permissions(self) -> tuple[Permission, ...]:
        content = self._content()
        with _translate_errors(self.config):
            self._roles = list(content.authorizationManager.roleList or [])
            raw = content.authorizationManager.RetrieveAllPermissions() or ()
            # Entity names from what the feed holds; VMs' in one more call.
            names = {m: str(v.get("name", "")) for m, (_, v) in self._objects.items()}
            vms = {_moid(p.entity): p.entity for p in raw if isinstance(p.entity, vim.VirtualMachine)}
            names |= {_moid(vm): str(v.get("name", "")) for vm, v in self._read_vms(vms.values(), ["name"])}
            return tuple(
                sorted(
                    (
                        Permission(
                            principal=p.principal,
                            role=_role_name(self._roles, p.roleId),
                            entity_id=_moid(p.entity) if p.entity is not None else "",
                            entity_name=names.get(_moid(p.entity), "") if p.entity is not None else "",
                            propagate=bool(p.propagate),
                            is_group=bool(p.group),
                        )
                        for p in raw
                    ),
                    key=lambda x: (x.entity_id, x.principal.lower(), x.is_group),
                )
            )

    def events(self, after: int | None) -> list[Event]:
        content = self._content()
        with _translate_errors(self.config):
            if self._events is None:
                spec = vim.event.EventFilterSpec(maxCount=EVENT_PAGE)
                self._events = content.eventManager.CreateCollectorForEvents(filter=spec)
            page = self._events.latestPage or ()
            out = [_event(e) for e in page if after is None or int(e.key) > after]
        out.sort(key=lambda e: e.key)
        return out if after is not None else out[-1:]

    def _content(self) -> Any:
        if self._session is None:
            raise FeedLost("the feed is not open")
        return self._session.content

    def close(self) -> None:
        session, self._session = self._session, None
        self._collector = self._filter = self._events = None
        if session is not None:
            try:
                _logout(session)
            except Exception as exc:  # the session may be gone with the connection
                log.debug("logout failed: %s", type(exc).__name__)


def _slim(name: str, value: Any) -> Any:
    """Only the network cards and disks of a device list: what the inventory
    needs (the rest is most of a VM's size)."""
    if name != DEVICES:
        return value
    return [d for d in value or () if isinstance(d, vim.vm.device.VirtualDisk)] + _ethernet_cards(value)


def _role_name(roles: list[Any], role_id: int) -> str:
    return next((r.name for r in roles if r.roleId == role_id), str(role_id))


def _event(e: Any) -> Event:
    vm = getattr(e, "vm", None)
    entity = getattr(e, "entity", None)
    target = getattr(vm, "vm", None) or getattr(entity, "entity", None)
    role = getattr(e, "role", None)
    return Event(
        key=int(e.key),
        type=type(e).__name__.rsplit(".", 1)[-1],
        created=e.createdTime,
        user=str(e.userName or ""),
        object_id=_moid(target) if target is not None else "",
        principal=str(getattr(e, "principal", "") or ""),
        role=str(getattr(role, "name", "") or ""),
        message=str(e.fullFormattedMessage or ""),
    )
