"""The vSphere inventory feed (connectors.feed): one property filter
followed with WaitForUpdatesEx, permissions with one RetrieveAllPermissions,
events from an event history collector.

The filter covers everything but VMs through a container view (a few hundred
objects at 20,000 VMs), the list of a container view of the VMs (which VMs
there are), and the VMs of a list view with every property the inventory
needs. The first read puts the VMs into the list view a page at a time, so
each answer holds one page (vcsim ignores maxObjectUpdates and would send the
whole estate in one answer); each page is derived, handed to the sync and
dropped before the next. For every change it reports, vcsim re-collects
the whole filter: this one costs it about what one over the estate did.

Following, the feed keeps the properties of everything but VMs; it reads the
VMs a batch touched again, by id, in one call, and derives only them, with
the derivation the connector's own inventory() uses, over every container
(paths and networks come out right). A batch that changes anything else (a
folder renamed, a host moved) reaches other objects' paths and zones: the
feed says it is lost, and the sync reads everything again, page by page.
Keeping no VM between batches keeps the process small.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
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
# VMs per page of the first read.
READ_PAGE = 2000
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
        # VMs entered whole by the second filter during the first read.
        self._entered: dict[str, tuple[Any, dict[str, Any]]] = {}
        # VMs the list view is yet to take in, or to let go.
        self._unlisted: dict[str, Any] = {}
        self._unlist: dict[str, Any] = {}
        self._list: Any = None
        self._vm_view: Any = None
        # Every VM there is, by moid (references only), as the VMs' container view says.
        self._vms: dict[str, Any] = {}
        self._following = False  # past the first read: VMs are read again per batch, not kept

    def __repr__(self) -> str:
        return f"<VSphereFeed {self.config.url}>"

    # -- following ----------------------------------------------------------

    def open(self, take: Callable[[Inventory, str], None]) -> str:
        self.close()
        self._following = False
        with _translate_errors(self.config):
            self._session = _login(self.config)
            content = self._session.content
            self._collector = content.propertyCollector.CreatePropertyCollector()
            root = content.rootFolder
            others = [t for t in INVENTORY_PROPS if t is not vim.VirtualMachine]
            view = content.viewManager.CreateContainerView(root, others, True)
            self._vm_view = content.viewManager.CreateContainerView(root, [vim.VirtualMachine], True)
            self._list = content.viewManager.CreateListView(obj=[])
            spec = _follow_spec(view, root, self._vm_view, self._list)
            self._filter = self._collector.CreateFilter(spec, partialUpdates=False)
            self._vms = {}
            self._roles = list(content.authorizationManager.roleList or [])
            self._objects, self._entered, self._version = {}, {}, ""
            self._drain()  # everything but VMs' own properties: light, whatever the estate
            vms = list(self._unlisted.values())
            self._forget()
            take(self._inventory(self._objects.values()), self._version)
            for start in range(0, len(vms), READ_PAGE):
                chunk = vms[start : start + READ_PAGE]
                entries = self._enter(chunk)
                vms_only = self._inventory([*self._objects.values(), *entries])
                take(Inventory(root_folder_id=vms_only.root_folder_id, vms=vms_only.vms), self._version)
                del entries, vms_only  # a page of the estate: gone before the next is read
        # What changed meanwhile (or came, or went) is read again on the first wait.
        self._touched |= {m: obj for m, (obj, _) in self._entered.items()}
        self._entered = {}
        self._following = True
        return self._version

    def _enter(self, vms: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
        """Put VMs into the list view the second filter follows and take their
        properties from its answer (the filter reports what enters its view:
        vcsim in one answer, vCenter in pages); any it did not report within
        a second of no progress are read directly."""
        self._list.ModifyListView(add=vms)
        wanted = {_moid(vm) for vm in vms}
        missing = wanted - self._entered.keys() - self._left
        while missing:
            self._drain(seconds=1)
            still = missing - self._entered.keys() - self._left
            if still == missing:
                break
            missing = still
        entries = [self._entered.pop(m) for m in wanted if m in self._entered]
        return entries + self._read_vms([vm for vm in vms if _moid(vm) in missing])

    def _drain(self, seconds: int = 0) -> None:
        """Apply the next answer and its continuation pages."""
        truncated = True
        while truncated:
            update = self._collector.WaitForUpdatesEx(self._version, self._options(seconds))
            truncated = bool(update is not None and update.truncated)
            if update is not None:
                self._apply(update)
            del update
            seconds = 0

    def wait(self, seconds: float) -> Batch | None:
        if self._collector is None:
            raise FeedLost("the feed is not open")
        changed = bool(self._touched or self._left)
        with _translate_errors(self.config):
            try:
                if self._unlisted or self._unlist:  # VMs that came or went: the list view follows
                    self._list.ModifyListView(add=list(self._unlisted.values()), remove=list(self._unlist.values()))
                    self._unlisted, self._unlist = {}, {}
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
            # A container, host, datastore or network changed: other objects'
            # paths and zones may have, so everything is read again, in pages.
            raise FeedLost("the inventory's structure changed")
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

    def _forget(self) -> None:
        self._touched, self._left, self._reaching, self._unlisted = {}, set(), False, {}

    @staticmethod
    def _options(seconds: int) -> Any:
        return vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=seconds, maxObjectUpdates=MAX_OBJECT_UPDATES)

    def _apply(self, update: Any) -> None:
        self._version = str(update.version or "")
        for filter_update in update.filterSet or ():
            for item in filter_update.objectSet or ():
                if isinstance(item.obj, vim.view.ContainerView):
                    self._apply_view(item)
                    continue
                if isinstance(item.obj, vim.VirtualMachine):
                    self._apply_vm(item)
                    continue
                self._reaching |= self._following
                moid = _moid(item.obj)
                if item.kind == "leave":
                    self._objects.pop(moid, None)
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

    def _apply_view(self, item: Any) -> None:
        """The VMs' container view changed: VMs came (into the list view and
        read for the batch) or went."""
        if item.kind == "leave":
            return
        for change in item.changeSet or ():
            if change.name != "view":
                continue
            now = {_moid(vm): vm for vm in change.val or ()}
            for moid in now.keys() - self._vms.keys():
                self._left.discard(moid)
                self._unlist.pop(moid, None)
                self._unlisted[moid] = self._touched[moid] = now[moid]
            for moid in self._vms.keys() - now.keys():
                self._gone(moid)
                self._unlist[moid] = self._vms[moid]
            self._vms = now

    def _apply_vm(self, item: Any) -> None:
        """A VM's update, by the filter over the list view: entered whole while
        the first read runs, the VM is taken as it comes; otherwise it is read
        again for the batch."""
        moid = _moid(item.obj)
        if item.kind == "leave":
            self._gone(moid)
            return
        if item.kind == "enter" and not self._following:
            self._entered[moid] = (item.obj, {c.name: _slim(c.name, c.val) for c in item.changeSet or ()})
            return
        self._touched[moid] = item.obj

    def _gone(self, moid: str) -> None:
        for pending in (self._touched, self._entered, self._unlisted):
            pending.pop(moid, None)
        self._left.add(moid)

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
        self._collector = self._filter = self._vm_view = self._list = self._events = None
        self._vms = {}
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


def _follow_spec(others: Any, root: Any, vm_view: Any, list_view: Any) -> Any:
    """One filter (vcsim re-collects each filter once per filter for every
    change it reports: one filter, not three): the inventory filter over a
    view of everything but VMs; the VMs' container view's list (which VMs
    there are); every VM property the inventory needs, for the VMs of the
    list view."""
    pc = vmodl.query.PropertyCollector
    spec = inventory_filter_spec(others, root)
    spec.objectSet = [
        *spec.objectSet,
        pc.ObjectSpec(obj=vm_view, skip=False),
        pc.ObjectSpec(
            obj=list_view,
            skip=True,
            selectSet=[pc.TraversalSpec(name="list", type=vim.view.ListView, path="view", skip=False)],
        ),
    ]
    spec.propSet = [p for p in spec.propSet if p.type is not vim.VirtualMachine] + [
        pc.PropertySpec(type=vim.view.ContainerView, pathSet=["view"], all=False),
        pc.PropertySpec(type=vim.VirtualMachine, pathSet=_VM_PROPS, all=False),
    ]
    return spec
