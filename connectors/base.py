"""The interface every hypervisor backend implements.

Backends take and return plain frozen dataclasses, never ORM objects, and
raise only the errors defined here, so the approvals app can map them to
ticket outcomes in one place.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# Hears the hypervisor task id as soon as the task exists.
TaskCallback = Callable[[str], None]

# What power_vm does: power on, ask the guest to shut down (waiting until it
# is off), power off hard, reset.
POWER_ACTIONS = ("on", "shutdown", "off", "reset")


class ConnectorError(Exception):
    """Anything the hypervisor or the connection to it got wrong."""


class TransientConnectorError(ConnectorError):
    """Worth retrying: timeouts, connection refused, a session that dropped."""


class AuthenticationFailed(ConnectorError):
    """The hypervisor refused the credentials."""


class ObjectNotFound(ConnectorError):
    """No object of this kind carries this id (an id of another kind's object
    counts as not found)."""

    def __init__(self, kind: str, id: str):  # noqa: A002 - the object's id
        self.kind = kind
        self.id = id
        super().__init__(f"{kind} {id!r} not found")


class OperationRejected(ConnectorError):
    """The hypervisor refused the operation; its message is kept."""


class IdentityMismatch(ConnectorError):
    """The endpoint is not the hypervisor the connector is pinned to; nothing
    carrying credentials was sent to it."""

    def __init__(self, *, what: str, expected: str, seen: str, url: str):
        self.what = what  # "instance_uuid" or "tls_fingerprint"
        self.expected = expected
        self.seen = seen
        self.url = url
        label = {"instance_uuid": "vCenter instance UUID", "tls_fingerprint": "TLS certificate SHA-256"}.get(what, what)
        super().__init__(
            f"{url} is not the pinned hypervisor: its {label} is {seen or '(none)'}, expected {expected}; "
            "nothing was sent to it"
        )


@dataclass(frozen=True)
class ConnectorIdentity:
    """Who answers at an endpoint, read without logging in: the vCenter's
    instance UUID and the SHA-256 of its TLS certificate (hex, lowercase, no
    colons; empty over plain http)."""

    instance_uuid: str
    tls_fingerprint: str


@dataclass(frozen=True)
class ConnectionConfig:
    url: str
    username: str
    password: str = field(repr=False)
    verify_tls: bool = True
    # The pin: when set, an endpoint that answers with another identity is
    # refused before the credentials are sent.
    instance_uuid: str | None = None
    tls_fingerprint: str | None = None


@dataclass(frozen=True)
class Nic:
    """One network card of a VM or template."""

    key: int  # the virtual device key
    label: str  # "Network adapter 1"
    # Managed object id of the backing network or distributed port group;
    # None when the card has no backing.
    network_id: str | None


# Every inventory object carries its managed object id, its name, the id of
# its parent in vCenter's inventory tree (None for the root folder) and its
# inventory path ("/" for the root folder, "/lab/vm/prod-vms/prod-web-01";
# names escaped as vCenter does, "/" as %2f). Names are for people; callers
# match objects by id.


@dataclass(frozen=True)
class Datacenter:
    id: str
    name: str
    parent_id: str | None
    path: str


@dataclass(frozen=True)
class Folder:
    id: str
    name: str
    parent_id: str | None
    path: str


@dataclass(frozen=True)
class Cluster:
    id: str
    name: str
    parent_id: str | None
    path: str


@dataclass(frozen=True)
class Host:
    id: str
    name: str
    parent_id: str | None
    path: str
    cluster_id: str | None  # None for a standalone host


@dataclass(frozen=True)
class ResourcePool:
    id: str
    name: str
    parent_id: str | None
    path: str
    cluster_id: str | None  # None for a standalone host's pools
    host_ids: tuple[str, ...]  # hosts of the owning compute resource


@dataclass(frozen=True)
class DatastoreCluster:
    """A storage pod."""

    id: str
    name: str
    parent_id: str | None
    path: str


@dataclass(frozen=True)
class Datastore:
    id: str
    name: str
    parent_id: str | None
    path: str
    datastore_cluster_id: str | None


@dataclass(frozen=True)
class Network:
    """A standard network or a distributed port group (not the switch)."""

    id: str
    name: str
    parent_id: str | None
    path: str


@dataclass(frozen=True)
class Disk:
    """One virtual disk of a VM or template."""

    key: int  # the virtual device key
    label: str  # "Hard disk 1"
    capacity_kb: int
    datastore_id: str | None
    file: str  # "[ds-prod] prod-web-01/disk1.vmdk"


@dataclass(frozen=True)
class Snapshot:
    """One snapshot of a VM (the tree flattened, parents first)."""

    id: str  # managed object id ("snapshot-42")
    name: str
    description: str
    created: str  # ISO 8601, as the hypervisor reports it
    parent_id: str | None
    power_state: str  # the VM's power state when it was taken


@dataclass(frozen=True)
class VirtualMachine:
    id: str
    name: str
    parent_id: str | None
    path: str
    host_id: str | None
    datastore_ids: tuple[str, ...]
    nics: tuple[Nic, ...]
    power_state: str
    instance_uuid: str
    is_template: bool = False
    resource_pool_id: str | None = None
    cpus: int = 0
    memory_mb: int = 0
    # What may change while the VM runs (vSphere's hot-add settings).
    cpu_hot_add: bool = False
    cpu_hot_remove: bool = False
    memory_hot_add: bool = False
    disks: tuple[Disk, ...] = ()
    snapshots: tuple[Snapshot, ...] = ()
    current_snapshot_id: str | None = None


@dataclass(frozen=True)
class Role:
    id: int
    name: str


@dataclass(frozen=True)
class Permission:
    principal: str
    role: str
    entity_id: str  # managed object id
    entity_name: str  # for people; match by entity_id
    propagate: bool = True
    is_group: bool = False


@dataclass(frozen=True)
class Inventory:
    """Everything the connector sees; templates are in `vms`, flagged."""

    root_folder_id: str = ""
    datacenters: tuple[Datacenter, ...] = ()
    folders: tuple[Folder, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    hosts: tuple[Host, ...] = ()
    resource_pools: tuple[ResourcePool, ...] = ()
    datastore_clusters: tuple[DatastoreCluster, ...] = ()
    datastores: tuple[Datastore, ...] = ()
    networks: tuple[Network, ...] = ()
    vms: tuple[VirtualMachine, ...] = ()
    roles: tuple[Role, ...] = ()


@dataclass(frozen=True)
class TemplateImage:
    """What a template is made of, read live: its guest OS id, its
    configuration's change version and its disk files. Together they are the
    template's fingerprint: vetting records it, every clone compares it."""

    id: str
    guest_id: str  # "debian10_64Guest", "windows9Server64Guest", …
    change_version: str
    disk_files: tuple[str, ...]  # "[ds-templates] tpl-debian12/disk1.vmdk", in device order

    def fingerprint(self) -> dict:
        return {"guest_id": self.guest_id, "change_version": self.change_version, "disk_files": list(self.disk_files)}


LINUX, WINDOWS = "linux", "windows"

# Guest ids of the Linux families vSphere's LinuxPrep prepares, besides those
# that say "linux" ("otherLinux64Guest", "oracleLinux9_64Guest", …); Windows
# ids start with "win" (Sysprep).
_LINUX_GUEST_PREFIXES = ("asianux", "centos", "coreos", "debian", "fedora", "photon", "rhel", "sles", "suse", "ubuntu")


def customization_family(guest_id: str) -> str | None:
    """LINUX or WINDOWS for a guest id the hypervisor can customize, else None
    (FreeBSD, Solaris, other guests, unknown)."""
    guest = (guest_id or "").lower()
    if guest.startswith("win"):
        return WINDOWS
    if "linux" in guest or guest.startswith(_LINUX_GUEST_PREFIXES):
        return LINUX
    return None


@dataclass(frozen=True)
class GuestCustomization:
    """What a new VM is prepared with on first boot: its host name and a
    fresh administrator (root or Administrator) password."""

    family: str  # LINUX or WINDOWS
    hostname: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class OperationResult:
    """What an operation did: the hypervisor task (None when nothing had to be
    done because the desired state already held) and a short result in words."""

    task_id: str | None
    result: str
    already_done: bool = False
    object_id: str | None = None
    # What the audit log keeps beside the result (a destroyed VM's last
    # configuration, say): plain JSON-able data, never a secret.
    details: Mapping = field(default_factory=dict)
    # The changed objects as read back after the change, as read_objects
    # returns them, when the operation read them so anyway; None otherwise.
    read_back: Inventory | None = field(default=None, compare=False, repr=False)


class Connector(abc.ABC):
    """One hypervisor. Objects are given by managed object id, never by name:
    an id that does not exist, or names an object of another type, raises
    ObjectNotFound."""

    # The operations this backend carries out (method names); a ticket kind
    # that needs another is refused at submission.
    operations: frozenset[str] = frozenset()

    def __init__(self, config: ConnectionConfig):
        self.config = config

    @abc.abstractmethod
    def identify(self) -> ConnectorIdentity:
        """Who answers at the configured URL, read without logging in (the
        password is not sent). Raises TransientConnectorError or
        ConnectorError when the endpoint cannot be read."""

    @abc.abstractmethod
    def check_login(self) -> None:
        """Log in (or reuse the session); raise AuthenticationFailed,
        IdentityMismatch (the pin in the config does not hold) or
        TransientConnectorError."""

    @abc.abstractmethod
    def inventory(self) -> Inventory:
        """Datacenters, folders, clusters, hosts, resource pools, datastore
        clusters, datastores, networks, VMs (templates included, flagged) and
        roles, each with its id, parent and inventory path."""

    @abc.abstractmethod
    def read_objects(self, objects: Mapping[str, str], *, roles: bool = True) -> Inventory:
        """Just these objects ({managed object id: kind}, kinds as tickets
        name them: "vm", "template", "host", "cluster", "datastore",
        "datastore_cluster", "network", "folder", "datacenter",
        "resource_pool", "root"), read now in one round trip, with what their
        zones and paths need: every ancestor, a VM's resource pool, the hosts
        of its compute resource, its datastores and networks; for a
        container, everything beneath it. The root folder comes too, and the
        roles unless `roles` is False (on vCenter the role list, privileges
        and all, is most of such a read). An id that names no object is left
        out. The cost grows with the objects asked for (and a container's
        contents), not the estate."""

    @abc.abstractmethod
    def find_vm_by_uuid(self, instance_uuid: str) -> VirtualMachine | None:
        """The VM with this instance uuid, or None."""

    @abc.abstractmethod
    def read_vm(self, vm_id: str) -> VirtualMachine | None:
        """The VM with this managed object id, or None when there is none."""

    @abc.abstractmethod
    def clone_vm(
        self,
        *,
        template_id: str,
        name: str,
        datastore_id: str,
        networks: tuple[str, ...],
        cpus: int,
        memory_mb: int,
        instance_uuid: str,
        host_id: str | None = None,
        cluster_id: str | None = None,
        folder_id: str | None = None,
        customization: GuestCustomization | None = None,
        on_task: TaskCallback | None = None,
    ) -> OperationResult:
        """Clone the template into a new VM named `name`, prepared with
        `customization` (host name, administrator password) on first boot. `networks` holds one
        network id per network card of the template, in the template's card
        order; another count is refused before any task. The new VM lands in
        `folder_id`, or when None in the VM folder of the template's
        datacenter (as before). Idempotent on `instance_uuid`: a VM that
        already carries it counts as done."""

    def read_template(self, template_id: str) -> TemplateImage:
        """The template's image facts, read live (ObjectNotFound when no
        template has this id)."""
        raise OperationRejected(f"{type(self).__name__} cannot read templates")

    @abc.abstractmethod
    def relocate_vm(
        self,
        *,
        vm_id: str,
        host_id: str,
        datastore_id: str | None = None,
        network_map: dict[str, str] | None = None,
        on_task: TaskCallback | None = None,
    ) -> OperationResult:
        """Move the VM to the host (and datastore), moving every card on a
        network in `network_map` ({current network id: new network id}) in the
        same task. Already there counts as done."""

    @abc.abstractmethod
    def permissions(self, entity_id: str | None = None) -> tuple[Permission, ...]:
        """Permissions set on the entity, or every permission when None."""

    @abc.abstractmethod
    def add_permission(
        self,
        *,
        principal: str,
        role: str,
        entity_id: str,
        propagate: bool = True,
        on_task: TaskCallback | None = None,
    ) -> OperationResult:
        """Give `principal` the role (by name) on the entity. Already granted
        counts as done."""

    @abc.abstractmethod
    def remove_permission(self, *, principal: str, entity_id: str) -> OperationResult:
        """Take `principal`'s permission on the entity away. Already absent
        counts as done."""

    # -- a VM's life: power, size, snapshots, removal ----------------------
    # Each takes the VM by managed object id and the instance UUID the ticket
    # bound; a VM at that id with another instance UUID is OperationRejected,
    # never acted on.

    @abc.abstractmethod
    def power_vm(
        self,
        *,
        vm_id: str,
        instance_uuid: str,
        action: str,
        timeout_seconds: float,
        on_task: TaskCallback | None = None,
    ) -> OperationResult:
        """One of POWER_ACTIONS. "shutdown" asks the guest and waits up to
        `timeout_seconds` for the VM to be off (OperationRejected if it is
        not). Already on (off) counts as done for "on" ("off", "shutdown");
        "reset" needs a VM that is on."""

    @abc.abstractmethod
    def destroy_vm(
        self, *, vm_id: str, instance_uuid: str, shutdown_timeout_seconds: float, on_task: TaskCallback | None = None
    ) -> OperationResult:
        """Power the VM off (the guest's own shutdown first, a hard power-off
        after `shutdown_timeout_seconds`) and destroy it with its disks. No VM
        with this instance UUID counts as done. The result's details hold its
        last configuration (host, disks, networks, cpus, memory)."""

    @abc.abstractmethod
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
        """Set CPUs and memory, add a network card on the network, remove the
        card with this device key, in one task. Nothing to change counts as done."""

    @abc.abstractmethod
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
        """Snapshot the VM (with its memory when asked). A snapshot of this
        VM with the same name and description counts as done."""

    @abc.abstractmethod
    def revert_snapshot(
        self, *, vm_id: str, instance_uuid: str, snapshot_id: str, on_task: TaskCallback | None = None
    ) -> OperationResult:
        """Revert the VM to its snapshot `snapshot_id`; ObjectNotFound when the
        VM has no such snapshot."""

    @abc.abstractmethod
    def remove_snapshot(
        self, *, vm_id: str, instance_uuid: str, snapshot_id: str, on_task: TaskCallback | None = None
    ) -> OperationResult:
        """Delete the snapshot (its children stay). Already gone counts as done."""

    @abc.abstractmethod
    def task_state(self, task_id: str) -> tuple[str, str]:
        """(state, error) of a hypervisor task: state is queued, running,
        success, error, or unknown when the hypervisor no longer knows it."""

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Log out; the default does nothing."""


def vm_configuration(vm: VirtualMachine) -> dict:
    """A VM's configuration as the audit log keeps it (plain JSON data): where
    it ran, its disks and cards, its size."""
    return {
        "id": vm.id,
        "name": vm.name,
        "path": vm.path,
        "instance_uuid": vm.instance_uuid,
        "host": vm.host_id,
        "power_state": vm.power_state,
        "cpus": vm.cpus,
        "memory_mb": vm.memory_mb,
        "datastores": list(vm.datastore_ids),
        "disks": [
            {"label": d.label, "capacity_kb": d.capacity_kb, "datastore": d.datastore_id, "file": d.file}
            for d in vm.disks
        ],
        "networks": [{"label": n.label, "key": n.key, "network": n.network_id} for n in vm.nics],
        "snapshots": [{"id": s.id, "name": s.name} for s in vm.snapshots],
    }
