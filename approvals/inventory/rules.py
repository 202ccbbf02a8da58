"""The rules every inventory index shares: how a ticket's value resolves to
one object, and what zone each object is in. Subclasses supply the look-ups
(InventoryIndex over an Inventory in memory, StoredIndex over the inventory
table), so the rules are written once:

- a value that is an object's id, or has the form of a managed-object id
  ("vm-42", "group-d1"), is only ever matched as an id;
- a value starting with "/" is an inventory path ("/lab/vm/prod-vms/web-01");
- anything else is a name, and a name that more than one object of the
  accepted kinds carries is refused with the candidates, never guessed.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable
from dataclasses import dataclass

# The managed-object ids vCenter hands out: vm-42, host-21, domain-c7,
# domain-s13, group-d1 (folders, storage pods: group-p…), datacenter-2, …
MOID = re.compile(
    r"^(?:(?:vm|host|datacenter|datastore|network|dvportgroup|dvs|resgroup|vapp|folder|storagepod)-\d+"
    r"|domain-[cs]\d+|group-[a-z]\d+)$"
)

# Kinds of object a ticket may name, each with its words.
KIND_WORDS = {
    "vm": "VM",
    "template": "template",
    "host": "host",
    "cluster": "cluster",
    "datastore": "datastore",
    "datastore_cluster": "datastore cluster",
    "network": "network",
    "folder": "folder",
    "datacenter": "datacenter",
    "resource_pool": "resource pool",
    "root": "root folder",
}

# What each field of a Zone labels.
ZONE_FIELDS = (
    ("clusters", ("cluster",)),
    ("hosts", ("host",)),
    ("networks", ("network",)),
    ("datastores", ("datastore", "datastore_cluster")),
)


def looks_like_moid(value: str) -> bool:
    return bool(MOID.match(str(value)))


@dataclass(frozen=True)
class ZoneLabel:
    name: str
    trust_level: int

    @property
    def label(self) -> str:
        return self.name or "untrusted"


UNTRUSTED = ZoneLabel("", -1)


def _most_trusted(labels) -> ZoneLabel:
    return max(labels, key=lambda z: z.trust_level, default=UNTRUSTED)


class Unresolved(Exception):
    """A value that names no object, or more than one, in words."""


def matches(query: str, obj) -> bool:
    """Whether a search finds the object: a query starting with "/" is a
    path prefix, anything else part of the name, in any case."""
    if query.startswith("/"):
        return obj.path.startswith(query)
    return query.lower() in obj.name.lower()


def search_rank(needle: str, name: str, path: str) -> tuple:
    """The order searches answer in: the exact name, then names starting
    with the query, then the rest; by name and path within each."""
    lowered = name.lower()
    return (lowered != needle, not lowered.startswith(needle), lowered, path)


class IndexRules(abc.ABC):
    """Resolve and zone rules over look-ups a subclass supplies. `roles`
    maps role names to the inventory's roles."""

    roles: dict

    # -- what a subclass supplies -------------------------------------------

    @abc.abstractmethod
    def _find(self, object_id: str) -> tuple[str, object] | None:
        """(kind, object) with this id, or None."""

    @abc.abstractmethod
    def _at_path(self, path: str) -> tuple[str, object] | None:
        """(kind, object) at this inventory path, or None."""

    @abc.abstractmethod
    def _with_name(self, kinds: tuple[str, ...], name: str) -> list[tuple[str, object]]:
        """Every (kind, object) of `kinds` carrying `name`, kind by kind."""

    @abc.abstractmethod
    def objects(self, kind: str) -> list:
        """Every object of one kind, in inventory order."""

    @abc.abstractmethod
    def search(self, kinds: tuple[str, ...], query: str, *, limit: int) -> tuple[list[tuple[str, object]], bool]:
        """Up to `limit` (kind, object) of `kinds` the query `matches`, in
        search_rank order; and whether more match."""

    @abc.abstractmethod
    def has_instance_uuid(self, instance_uuid: str) -> bool:
        """Whether any VM or template carries this instance UUID."""

    @abc.abstractmethod
    def _hosts(self, *, cluster_id: str | None = None, ids: Iterable[str] = (), prefix: str | None = None) -> list:
        """Hosts of a cluster, of these ids, or whose path starts with `prefix`."""

    @abc.abstractmethod
    def _beneath(self, kind: str, prefix: str) -> list:
        """Objects of `kind` whose path starts with `prefix`."""

    @abc.abstractmethod
    def _vm_host_ids(self, *, pool_ids: Iterable[str] = (), prefix: str | None = None) -> set[str]:
        """The hosts ("" for none) that VMs and templates of these resource
        pools, or beneath `prefix`, run on."""

    @abc.abstractmethod
    def _prefetch(self, entries: set[str]) -> None:
        """Load what these zone entries name (ids or names) in one go."""

    # -- labels -------------------------------------------------------------

    def _label(self, zones) -> None:
        """Each object a zone's entry names carries the zone (a later zone
        wins over an earlier one for the same object)."""
        self._labels: dict[str, ZoneLabel] = {}
        zones = list(zones)
        self._prefetch({entry for zone in zones for field, _ in ZONE_FIELDS for entry in getattr(zone, field) or ()})
        for zone in zones:
            label = ZoneLabel(zone.name, zone.trust_level)
            for field, kinds in ZONE_FIELDS:
                for entry in getattr(zone, field, None) or ():
                    for obj in self._labelled(kinds, entry):
                        self._labels[obj.id] = label

    def _labelled(self, kinds, entry: str) -> list:
        """What a zone's entry labels: the object of that id, or (labels
        written by name) every object of that name."""
        found = self._find(entry)
        if found is not None and found[0] in kinds:
            return [found[1]]
        return [obj for _kind, obj in self._with_name(tuple(kinds), entry)]

    # -- look-ups -----------------------------------------------------------

    def get(self, object_id: str | None, kinds: tuple[str, ...] | None = None):
        """The object with this id (of one of `kinds`), or None."""
        found = self._find(object_id or "")
        if found is None or (kinds is not None and found[0] not in kinds):
            return None
        return found[1]

    def kind_of(self, object_id: str) -> str | None:
        found = self._find(object_id)
        return found[0] if found else None

    def named(self, kind: str, name: str) -> list:
        return [obj for _kind, obj in self._with_name((kind,), name)]

    def resolve(self, kinds: tuple[str, ...], value) -> tuple[str, object]:
        """(kind, object) for `value`, or Unresolved saying why not."""
        words = " or ".join(KIND_WORDS[k] for k in kinds)
        value = str(value).strip()
        exact = self._find(value)
        if exact is not None and exact[0] in kinds:
            return exact  # an id as the hypervisor gave it (some ids, e.g. vcsim's datastores, are not of moid form)
        if looks_like_moid(value):
            raise Unresolved(f"No {words} has the id {value}.")
        if value.startswith("/"):
            found = self._at_path(value)
            if found is None or found[0] not in kinds:
                raise Unresolved(f"No {words} at {value}.")
            return found
        candidates = self._with_name(tuple(kinds), value)
        if not candidates:
            raise Unresolved(f"No {words} named {value!r}.")
        if len(candidates) > 1:
            listed = "; ".join(f"{obj.id} ({KIND_WORDS[kind]} {obj.path})" for kind, obj in candidates)
            raise Unresolved(
                f"{len(candidates)} objects are named {value!r}: {listed}. Name one by its id or its path."
            )
        return candidates[0]

    def resolve_field(self, errors: dict, field: str, kinds: tuple[str, ...], value):
        """resolve(), with a refusal added to `errors[field]`; None then."""
        try:
            return self.resolve(kinds, value)
        except Unresolved as exc:
            errors.setdefault(field, []).append(str(exc))
            return None

    @staticmethod
    def ref(kind: str, obj) -> dict:
        """What a ticket stores of an object: its identity and where it was."""
        ref = {"type": kind, "id": obj.id, "name": obj.name, "path": obj.path}
        if kind in ("vm", "template"):
            ref["instance_uuid"] = obj.instance_uuid
        return ref

    # -- zones --------------------------------------------------------------

    @property
    def labels(self) -> dict[str, ZoneLabel]:
        """Each labelled object's id and its zone label."""
        return dict(self._labels)

    def label_of(self, object_id: str | None) -> ZoneLabel:
        return self._labels.get(object_id or "", UNTRUSTED)

    def host_zone(self, host_id: str | None) -> ZoneLabel:
        """A host's own label, else its cluster's; unlabelled is untrusted."""
        if host_id in self._labels:
            return self._labels[host_id]
        host = self.get(host_id, ("host",))
        return self.label_of(host.cluster_id) if host is not None else UNTRUSTED

    def cluster_zone(self, cluster_id: str) -> ZoneLabel:
        return self.label_of(cluster_id)

    def datastore_zone(self, datastore_id: str | None) -> ZoneLabel:
        """A datastore's own label, else its datastore cluster's."""
        if datastore_id in self._labels:
            return self._labels[datastore_id]
        datastore = self.get(datastore_id, ("datastore",))
        return self.label_of(datastore.datastore_cluster_id) if datastore is not None else UNTRUSTED

    def network_zone(self, network_id: str | None) -> ZoneLabel:
        return self.label_of(network_id)

    def vm_zone(self, vm) -> ZoneLabel:
        return self.host_zone(vm.host_id) if vm.host_id else UNTRUSTED

    def placement_zone(self, kind: str, obj) -> ZoneLabel:
        return self.host_zone(obj.id) if kind == "host" else self.cluster_zone(obj.id)

    def entity_zone(self, kind: str, obj) -> ZoneLabel:
        """The zone a permission on this object reaches: an object's own, and
        for a container the most trusted zone of anything beneath it."""
        if kind in ("vm", "template"):
            return self.vm_zone(obj)
        if kind == "host":
            return self.host_zone(obj.id)
        if kind == "datastore":
            return self.datastore_zone(obj.id)
        if kind == "network":
            return self.network_zone(obj.id)
        return _most_trusted(self.zones_beneath(kind, obj))

    def zones_beneath(self, kind: str, obj) -> list[ZoneLabel]:
        """The zones of a container and of everything beneath it, each once,
        least trusted first."""
        labels = {self.label_of(obj.id)}
        if kind == "cluster":
            # Its VMs run on its hosts, so they add no zone of their own.
            hosts = self._hosts(cluster_id=obj.id)
            vm_hosts: set[str] = set()
        elif kind == "resource_pool":
            pools = {obj.id} | {p.id for p in self._beneath("resource_pool", obj.path.rstrip("/") + "/")}
            hosts = self._hosts(ids=obj.host_ids)
            labels.add(self.label_of(obj.cluster_id))
            vm_hosts = self._vm_host_ids(pool_ids=pools)
        else:  # folders, datacenters, the root: everything whose path lies beneath
            prefix = "/" if kind == "root" else obj.path.rstrip("/") + "/"
            hosts = self._hosts(prefix=prefix)
            vm_hosts = self._vm_host_ids(prefix=prefix)
            labels |= {self.datastore_zone(d.id) for d in self._beneath("datastore", prefix)}
            labels |= {self.label_of(n.id) for n in self._beneath("network", prefix)}
            labels |= {self.label_of(c.id) for c in self._beneath("cluster", prefix)}
        labels |= {self.host_zone(h.id) for h in hosts}
        labels |= {self.host_zone(h) if h else UNTRUSTED for h in vm_hosts}
        return sorted(labels, key=lambda z: (z.trust_level, z.name))
