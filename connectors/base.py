"""The interface every hypervisor backend implements.

Backends take and return plain frozen dataclasses, never ORM objects, and
raise only the errors defined here, so the approvals app can map them to
ticket outcomes in one place.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

# Hears the hypervisor task id as soon as the task exists.
TaskCallback = Callable[[str], None]


class ConnectorError(Exception):
    """Anything the hypervisor or the connection to it got wrong."""


class TransientConnectorError(ConnectorError):
    """Worth retrying: timeouts, connection refused, a session that dropped."""


class AuthenticationFailed(ConnectorError):
    """The hypervisor refused the credentials."""


class ObjectNotFound(ConnectorError):
    """A named object does not exist in the inventory."""

    def __init__(self, kind: str, name: str):
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} {name!r} not found")


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
class Cluster:
    id: str
    name: str


@dataclass(frozen=True)
class Host:
    id: str
    name: str
    cluster: str | None  # cluster name, None for a standalone host


@dataclass(frozen=True)
class Datastore:
    id: str
    name: str


@dataclass(frozen=True)
class Network:
    id: str
    name: str


@dataclass(frozen=True)
class Folder:
    id: str
    name: str


@dataclass(frozen=True)
class VirtualMachine:
    id: str
    name: str
    host: str | None
    datastores: tuple[str, ...]
    power_state: str
    instance_uuid: str
    is_template: bool = False


@dataclass(frozen=True)
class Role:
    id: int
    name: str


@dataclass(frozen=True)
class Permission:
    principal: str
    role: str
    entity: str  # entity name
    entity_id: str  # managed object id
    propagate: bool = True
    is_group: bool = False


@dataclass(frozen=True)
class Inventory:
    clusters: tuple[Cluster, ...] = ()
    hosts: tuple[Host, ...] = ()
    datastores: tuple[Datastore, ...] = ()
    networks: tuple[Network, ...] = ()
    folders: tuple[Folder, ...] = ()
    vms: tuple[VirtualMachine, ...] = ()
    roles: tuple[Role, ...] = ()


@dataclass(frozen=True)
class OperationResult:
    """What an operation did: the hypervisor task (None when nothing had to be
    done because the desired state already held) and a short result in words."""

    task_id: str | None
    result: str
    already_done: bool = False
    object_id: str | None = None


class Connector(abc.ABC):
    """One hypervisor. Objects are named as the inventory shows them: by name or
    by managed object id."""

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
        """Clusters, hosts, datastores, networks, folders, VMs (templates
        included, flagged) and roles."""

    @abc.abstractmethod
    def find_vm_by_uuid(self, instance_uuid: str) -> VirtualMachine | None:
        """The VM with this instance uuid, or None."""

    @abc.abstractmethod
    def clone_vm(
        self,
        *,
        template: str,
        name: str,
        datastore: str,
        network: str,
        cpus: int,
        memory_mb: int,
        instance_uuid: str,
        host: str | None = None,
        cluster: str | None = None,
        on_task: TaskCallback | None = None,
    ) -> OperationResult:
        """Clone `template` into a new VM. Idempotent on `instance_uuid`: a VM
        that already carries it counts as done."""

    @abc.abstractmethod
    def relocate_vm(
        self, *, vm: str, host: str, datastore: str | None = None, on_task: TaskCallback | None = None
    ) -> OperationResult:
        """Move `vm` to `host` (and `datastore`). Already there counts as done."""

    @abc.abstractmethod
    def permissions(self, entity: str | None = None) -> tuple[Permission, ...]:
        """Permissions set on `entity`, or every permission when None."""

    @abc.abstractmethod
    def add_permission(
        self,
        *,
        principal: str,
        role: str,
        entity: str,
        propagate: bool = True,
        on_task: TaskCallback | None = None,
    ) -> OperationResult:
        """Give `principal` `role` on `entity`. Already granted counts as done."""

    @abc.abstractmethod
    def remove_permission(self, *, principal: str, entity: str) -> OperationResult:
        """Take `principal`'s permission on `entity` away. Already absent counts
        as done."""

    @abc.abstractmethod
    def task_state(self, task_id: str) -> tuple[str, str]:
        """(state, error) of a hypervisor task: state is queued, running,
        success, error, or unknown when the hypervisor no longer knows it."""

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Log out; the default does nothing."""
