"""One connector's inventory as the table holds it (connectors.models.
InventoryObject), answered with indexed SQL: each look-up asks for the rows
it needs, and rows already read are kept for the life of the index, so a
submission costs a handful of queries whatever the size of the estate.

The table is kept current by the sync; where no full read has been stored
yet (a fresh portal, tests) or a caller asks for it, one is made first."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Case, IntegerField, Q, When
from django.db.models.functions import Lower

from approvals.inventory.fill import fill_inventory
from approvals.inventory.freshness import Freshness, freshness_of
from approvals.inventory.rules import ZONE_FIELDS, IndexRules, matches, search_rank
from connectors.base import Folder, Role
from connectors.inventory_store import CONTENT_FIELDS, object_of
from connectors.models import InventoryObject, InventoryState

VM_TYPES = ("vm", "template")
LABELLED_TYPES = tuple(sorted({kind for _field, kinds in ZONE_FIELDS for kind in kinds}))


class StoredIndex(IndexRules):
    """Look-ups by id, path and name, and zones, over the inventory table."""

    def __init__(self, connector, zones, state: InventoryState | None):
        self.connector = connector
        self.state = state
        self._root_id = state.root_folder_id if state else ""
        self.roles = {r["name"]: Role(id=r["id"], name=r["name"]) for r in (state.roles if state else ())}
        self._by_id: dict[str, tuple[str, object] | None] = {}
        self._by_path: dict[str, tuple[str, object] | None] = {}
        self._by_name: dict[tuple[str, str], list] = {}
        self._objects: dict[str, list] = {}
        # Ids the rows read so far point at (a VM's host, datastores and
        # networks, a host's cluster), read along with the next id asked for.
        self._ahead: set[str] = set()
        self._label(zones)

    @classmethod
    def for_connector(cls, connector, *, refresh: bool = False) -> StoredIndex:
        """The connector's stored inventory, filled first when no full read
        is stored or `refresh` asks for one (InventoryUnavailable then, in
        words, when it cannot be read)."""
        from approvals.models import Zone

        state = InventoryState.objects.filter(connector=connector).first()
        if refresh or state is None or state.full_read_at is None:
            fill_inventory(connector)
            state = InventoryState.objects.get(connector=connector)
        return cls(connector, list(Zone.objects.filter(connector=connector)), state)

    @property
    def freshness(self) -> Freshness:
        return freshness_of(self.state)

    # -- rows -----------------------------------------------------------------

    def _rows(self, **filters):
        rows = InventoryObject.objects.filter(connector=self.connector, **filters)
        return rows.order_by("path", "moid").values("moid", *CONTENT_FIELDS)

    def _keep(self, row) -> tuple[str, object]:
        found = self._by_id.get(row["moid"])
        if found is None:
            found = (row["type"], object_of(row))
            self._by_id[row["moid"]] = found
            self._by_path.setdefault(row["path"], found)
            self._ahead.update((row["host_id"], row["cluster_id"], row["datastore_cluster_id"], *row["datastore_ids"]))
            self._ahead.update(nic["network_id"] for nic in row["nics"] if nic.get("network_id"))
        return found

    def adopt(self, row) -> tuple[str, object]:
        """(kind, object) of a row read elsewhere (its values() with moid and
        every content field), kept like the rows this index reads itself."""
        return self._keep(row)

    def _keep_all(self, rows) -> list:
        return [self._keep(row)[1] for row in rows]

    def _root(self) -> tuple[str, object] | None:
        if not self._root_id:
            return None
        return ("root", Folder(id=self._root_id, name="Datacenters", parent_id=None, path="/"))

    # -- look-ups -------------------------------------------------------------

    def _find(self, object_id):
        if not object_id:
            return None
        if object_id not in self._by_id:
            wanted = {object_id} | {moid for moid in self._ahead if moid and moid not in self._by_id}
            self._ahead.clear()
            for moid in wanted:
                self._by_id[moid] = None
            self._keep_all(self._rows(moid__in=sorted(wanted)))
        found = self._by_id[object_id]
        if found is None and object_id == self._root_id:  # the root folder is always there, stored or not
            return self._root()
        return found

    def _at_path(self, path):
        if path not in self._by_path:
            row = self._rows(path=path).first()
            self._by_path[path] = None if row is None else self._keep(row)
        found = self._by_path[path]
        return self._root() if found is None and path == "/" else found

    def _with_name(self, kinds, name):
        missing = [kind for kind in kinds if (kind, name) not in self._by_name]
        if missing:
            for kind in missing:
                self._by_name[(kind, name)] = []
            for row in self._rows(type__in=missing, name=name):
                kind, obj = self._keep(row)
                self._by_name[(kind, name)].append(obj)
        return [(kind, obj) for kind in kinds for obj in self._by_name[(kind, name)]]

    def _prefetch(self, entries: set[str]) -> None:
        """Every object a zone entry names (by id or by name): one query."""
        if not entries:
            return
        named = Q(moid__in=entries) | Q(type__in=LABELLED_TYPES, name__in=entries)
        for kind in LABELLED_TYPES:
            for entry in entries:
                self._by_name.setdefault((kind, entry), [])
        for entry in entries:
            self._by_id.setdefault(entry, None)
        for row in (
            InventoryObject.objects.filter(named, connector=self.connector)
            .order_by("path", "moid")
            .values("moid", *CONTENT_FIELDS)
        ):
            kind, obj = self._keep(row)
            if kind in LABELLED_TYPES and row["name"] in entries:
                self._by_name[(kind, row["name"])].append(obj)

    def objects(self, kind: str) -> list:
        """Every object of one kind, by path (slow for every VM of a large
        estate: pages pick VMs by search instead)."""
        if kind not in self._objects:
            if kind == "root":
                found = self._find(self._root_id)
                self._objects[kind] = [found[1]] if found else []
            else:
                self._objects[kind] = self._keep_all(self._rows(type=kind))
        return self._objects[kind]

    def search(self, kinds: tuple[str, ...], query: str, *, limit: int) -> tuple[list[tuple[str, object]], bool]:
        """One query, at most limit + 1 rows, ranked in SQL as search_rank
        ranks (the root folder, never stored as a row, is matched here)."""
        needle = query.lower()
        rows = InventoryObject.objects.filter(connector=self.connector, type__in=[k for k in kinds if k != "root"])
        rows = rows.annotate(lowered=Lower("name"))
        if query.startswith("/"):
            rows = rows.filter(path__startswith=query)
        elif needle:
            rows = rows.filter(lowered__contains=needle)  # the trigram index on lower(name)
        rows = rows.annotate(
            rank=Case(
                When(lowered=needle, then=0),
                When(lowered__startswith=needle, then=1),
                default=2,
                output_field=IntegerField(),
            ),
        ).order_by("rank", "lowered", "path")
        found = [self._keep(row) for row in rows.values("moid", *CONTENT_FIELDS)[: limit + 1]]
        root = self._root() if "root" in kinds else None
        if root is not None and matches(query, root[1]):
            found = sorted([*found, root], key=lambda pair: search_rank(needle, pair[1].name, pair[1].path))
        return found[:limit], len(found) > limit

    def has_instance_uuid(self, instance_uuid: str) -> bool:
        return InventoryObject.objects.filter(
            connector=self.connector, type__in=VM_TYPES, instance_uuid=instance_uuid
        ).exists()

    def _hosts(self, *, cluster_id=None, ids: Iterable[str] = (), prefix=None) -> list:
        if cluster_id is not None:
            return self._keep_all(self._rows(type="host", cluster_id=cluster_id))
        if prefix is not None:
            return self._keep_all(self._rows(type="host", path__startswith=prefix))
        return self._keep_all(self._rows(type="host", moid__in=list(ids)))

    def _beneath(self, kind: str, prefix: str) -> list:
        return self._keep_all(self._rows(type=kind, path__startswith=prefix))

    def _vm_host_ids(self, *, pool_ids: Iterable[str] = (), prefix=None) -> set[str]:
        vms = InventoryObject.objects.filter(connector=self.connector, type__in=VM_TYPES)
        vms = vms.filter(path__startswith=prefix) if prefix is not None else vms.filter(resource_pool_id__in=pool_ids)
        host_ids = set(vms.order_by().values_list("host_id", flat=True).distinct())
        unread = [h for h in host_ids if h and h not in self._by_id]
        if unread:  # their zones come next: read them in one go
            for h in unread:
                self._by_id[h] = None
            self._keep_all(self._rows(moid__in=unread))
        return host_ids
