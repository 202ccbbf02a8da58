"""VMware vSphere backend (pyVmomi).

One vSphere session per process and endpoint: ServiceInstances are cached at
module level, keyed by (url, user, password hash, verify_tls), shared by every
VSphereConnector built with the same config, and logged in again when the
server has dropped the session.

Connectors are pinned: with an instance UUID and a certificate fingerprint in
the config, every TLS connection's certificate is checked in the handshake,
before any HTTP is sent, and the vCenter's ``about.instanceUuid`` (read
before Login) must match; otherwise IdentityMismatch, and the credentials
never leave the process.

Objects are given by managed object id only ("vm-42", "host-17", ...),
never by name: names are not unique in vCenter, and a name can be moved from
one object to another between the approval and the change. Every object is
reported with its id, its parent's id and its inventory path. Operations wait
for their vSphere task and return its id. Where the desired state already holds nothing is sent and the
result says ``already_done``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import os
import ssl
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from defusedxml import ElementTree
from pyVmomi import SoapStubAdapter, vim, vmodl
from pyVmomi.VmomiSupport import GetServiceVersions, versionIdMap

from .base import (
    AuthenticationFailed,
    Cluster,
    ConnectionConfig,
    Connector,
    ConnectorError,
    ConnectorIdentity,
    Datacenter,
    Datastore,
    DatastoreCluster,
    Folder,
    GuestCustomization,
    Host,
    IdentityMismatch,
    Inventory,
    Network,
    Nic,
    ObjectNotFound,
    OperationRejected,
    OperationResult,
    Permission,
    ResourcePool,
    Role,
    TaskCallback,
    TemplateImage,
    TransientConnectorError,
    VirtualMachine,
)
from .vsphere_customization import customization_spec
from .vsphere_vm import VM_DETAIL_PROPS, VM_OPERATIONS, VSphereVmOperations, vm_details

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds to wait for the TCP/TLS handshake and the API version document.
CONNECT_TIMEOUT = 5.0
#: Seconds to wait for any one SOAP call.
REQUEST_TIMEOUT = 120.0
#: Seconds one WaitForUpdatesEx on a task may block (well inside REQUEST_TIMEOUT).
TASK_WAIT_SECONDS = 30
#: Seconds an idle pooled HTTP connection is kept.
POOL_IDLE_TIMEOUT = 900
#: A write checks its session first unless the session answered this
#: recently (vCenter drops idle sessions after 30 minutes by default).
LOGIN_CHECK_SECONDS = 60.0
#: Longest wait for one vSphere task.
TASK_TIMEOUT = 3600.0
#: The states in which a task has ended.
_TASK_ENDED = (vim.TaskInfo.State.success, vim.TaskInfo.State.error)

# Kinds of entity add_permission / remove_permission / permissions accept.
_PERMISSION_ENTITY_TYPES = (
    vim.VirtualMachine,
    vim.HostSystem,
    vim.ClusterComputeResource,
    vim.ResourcePool,
    vim.Datacenter,
    vim.Folder,
)

_TRANSIENT_FAULTS = (
    vim.fault.HostConnectFault,
    vmodl.fault.HostCommunication,
    vmodl.fault.RequestCanceled,
)


def _task_failure(task: Any, info: Any) -> str:
    """A failed task's error in words, with the fault's kind."""
    # pyVmomi hands the LocalizedMethodFault over as the fault itself, its
    # localized message in .msg.
    fault = info.error
    inner = getattr(fault, "fault", None) or fault
    message = (getattr(fault, "localizedMessage", None) or getattr(inner, "msg", None) or "").strip()
    kind = getattr(type(inner), "_wsdlName", "") if inner is not None else ""
    if not message and inner is not None:
        message = _fault_message(inner)
    elif kind and kind not in message:
        message = f"{message} [{kind}]"
    return f"vSphere task {_moid(task)} ({info.descriptionId}) failed: {message or 'unknown error'}"


# --------------------------------------------------------------------------
# Sessions


@dataclass
class _Session:
    si: vim.ServiceInstance
    content: Any
    logins: int = 1
    # When a call on the session last succeeded (time.monotonic()).
    used_at: float = 0.0
    # A property collector of the session's own per thread, for waiting on
    # tasks: the updates a thread waits for are never another thread's.
    collectors: dict[int, Any] = field(default_factory=dict)

    def task_collector(self) -> Any:
        ident = threading.get_ident()
        collector = self.collectors.get(ident)
        if collector is None:
            collector = self.collectors[ident] = self.content.propertyCollector.CreatePropertyCollector()
        return collector


# (url, user, password hash, verify_tls, pinned instance uuid, pinned fingerprint)
SessionKey = tuple[str, str, str, bool, str, str]

_sessions: dict[SessionKey, _Session] = {}
_sessions_lock = threading.Lock()
# One lock per endpoint key so a slow login to one vCenter does not block others.
_key_locks: dict[SessionKey, threading.Lock] = {}


def _forget_sessions_after_fork() -> None:
    # A forked child (e.g. a prefork worker) must not share its parent's HTTP
    # connections; it logs in on its own. The parent's sessions stay valid.
    global _sessions_lock
    _sessions.clear()
    _key_locks.clear()
    _sessions_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_sessions_after_fork)


def _session_key(config: ConnectionConfig) -> SessionKey:
    digest = hashlib.sha256(config.password.encode("utf-8")).hexdigest()
    return (
        config.url,
        config.username,
        digest,
        bool(config.verify_tls),
        (config.instance_uuid or "").lower(),
        (config.tls_fingerprint or "").lower(),
    )


def _key_lock(key: SessionKey) -> threading.Lock:
    with _sessions_lock:
        return _key_locks.setdefault(key, threading.Lock())


def cert_fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate: hex, lowercase, no colons."""
    return hashlib.sha256(der).hexdigest()


class _PinningContext(ssl.SSLContext):
    """An SSL context that looks at the server certificate of every
    connection made with it, right after the handshake and before the caller
    can send a byte: it remembers the fingerprint, and with `expected` set
    refuses any other (also when verify_tls is off, where a pin matters most).

    pyVmomi's own ``thumbprint`` option is no substitute: it is consulted
    only after certificate verification has failed, so with verification
    off it never runs."""

    url: str = ""
    expected: str = ""
    seen: str = ""

    def wrap_socket(self, sock, *args, **kwargs):  # type: ignore[override]
        tls = super().wrap_socket(sock, *args, **kwargs)
        der = tls.getpeercert(binary_form=True)
        seen = cert_fingerprint(der) if der else ""
        self.seen = seen
        if self.expected and not hmac.compare_digest(seen, self.expected):
            tls.close()
            raise IdentityMismatch(what="tls_fingerprint", expected=self.expected, seen=seen, url=self.url)
        return tls


def _ssl_context(verify: bool, *, url: str = "", expected_fingerprint: str | None = None) -> _PinningContext:
    ctx = _PinningContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.url = url
    ctx.expected = (expected_fingerprint or "").replace(":", "").lower()
    return ctx


def _split_url(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConnectorError(f"not a vSphere URL: {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ConnectorError(f"bad port in vSphere URL {url!r}") from exc
    path = parts.path.rstrip("/") or "/sdk"
    return parts.scheme, parts.hostname, port, path


def _negotiate_version(scheme: str, host: str, port: int, path: str, context: ssl.SSLContext) -> str:
    """The newest vim25 API version both pyVmomi and the server speak.

    Done by hand (instead of SmartConnect) so that it is bounded by
    CONNECT_TIMEOUT: SmartConnect's discovery request has no timeout at all.
    """
    if scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=CONNECT_TIMEOUT, context=context
        )
    else:
        conn = http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT)
    try:
        conn.request("GET", path + "/vimServiceVersions.xml")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status == 503:
        raise TransientConnectorError(f"vSphere endpoint {host}:{port} is unavailable (HTTP 503)")
    if response.status != 200:
        raise ConnectorError(
            f"{host}:{port} is not a vSphere endpoint (HTTP {response.status} for the API version document)"
        )
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise ConnectorError(f"{host}:{port} sent an unreadable API version document") from exc
    supported = set()
    for namespace in root.findall("namespace"):
        if namespace.findtext("name") not in (None, "urn:vim25"):
            continue
        supported.add(namespace.findtext("version"))
        supported.update(v.text for v in namespace.findall("priorVersions/version"))
    for version in GetServiceVersions("vim25"):
        if versionIdMap.get(version) in supported:
            return version
    raise ConnectorError(f"{host}:{port} speaks no vSphere API version this client knows")


def _stub(scheme: str, host: str, port: int, path: str, version: str, context: ssl.SSLContext) -> SoapStubAdapter:
    return SoapStubAdapter(
        host=host,
        port=port if scheme == "https" else -port,
        version=version,
        path=path,
        sslContext=context if scheme == "https" else None,
        httpConnectionTimeout=REQUEST_TIMEOUT,
        connectionPoolTimeout=POOL_IDLE_TIMEOUT,
    )


def _check_instance_uuid(config: ConnectionConfig, content: Any) -> None:
    expected = (config.instance_uuid or "").lower()
    if not expected:
        return
    seen = str(getattr(content.about, "instanceUuid", "") or "").lower()
    if not hmac.compare_digest(seen, expected):
        raise IdentityMismatch(what="instance_uuid", expected=expected, seen=seen, url=config.url)


def _login(config: ConnectionConfig) -> _Session:
    scheme, host, port, path = _split_url(config.url)
    if config.tls_fingerprint and scheme != "https":
        # Pinned to a certificate: a plain-http URL would skip the check.
        raise IdentityMismatch(what="tls_fingerprint", expected=config.tls_fingerprint, seen="", url=config.url)
    context = _ssl_context(config.verify_tls, url=config.url, expected_fingerprint=config.tls_fingerprint)
    with _translate_errors(config):
        version = _negotiate_version(scheme, host, port, path, context)
        stub = _stub(scheme, host, port, path, version, context)
        si = vim.ServiceInstance("ServiceInstance", stub)
        content = si.RetrieveContent()  # carries no credentials
        try:
            _check_instance_uuid(config, content)
        except IdentityMismatch:
            stub.DropConnections()
            raise
        content.sessionManager.Login(config.username, config.password, None)
    log.info("logged in to %s as %s", config.url, config.username)
    return _Session(si=si, content=content)


def _identify(config: ConnectionConfig) -> ConnectorIdentity:
    scheme, host, port, path = _split_url(config.url)
    context = _ssl_context(config.verify_tls, url=config.url)
    with _translate_errors(config):
        version = _negotiate_version(scheme, host, port, path, context)
        fingerprint = context.seen if scheme == "https" else ""
        # The service content must come from the certificate just seen.
        context.expected = fingerprint
        stub = _stub(scheme, host, port, path, version, context)
        try:
            content = vim.ServiceInstance("ServiceInstance", stub).RetrieveContent()
        finally:
            stub.DropConnections()
    return ConnectorIdentity(
        instance_uuid=str(getattr(content.about, "instanceUuid", "") or "").lower(), tls_fingerprint=fingerprint
    )


def _logout(session: _Session) -> None:
    try:
        session.content.sessionManager.Logout()
    except Exception as exc:  # best effort: the session or the server may be gone
        log.debug("vSphere logout failed: %s", type(exc).__name__)


def drop_sessions() -> None:
    """Forget (and log out) every cached session. For tests and shutdown."""
    with _sessions_lock:
        sessions = list(_sessions.values())
        _sessions.clear()
    for session in sessions:
        _logout(session)


# --------------------------------------------------------------------------
# Errors


def _fault_message(fault: BaseException) -> str:
    msg = getattr(fault, "msg", None) or ""
    if not msg:
        for item in getattr(fault, "faultMessage", None) or ():
            if getattr(item, "message", None):
                msg = item.message
                break
    name = type(fault).__name__
    full = getattr(type(fault), "_wsdlName", None) or name
    return f"{full}: {msg}" if msg else full


@contextmanager
def _translate_errors(config: ConnectionConfig | None = None) -> Iterator[None]:
    """Turn pyVmomi / socket errors into the connector's error types."""
    where = f" ({config.url})" if config is not None else ""
    try:
        yield
    except ConnectorError:
        raise
    except vim.fault.InvalidLogin as exc:
        user = f" for {config.username!r}" if config is not None else ""
        raise AuthenticationFailed(f"vSphere refused the login{user}{where}") from exc
    except vim.fault.NotAuthenticated:
        raise  # handled by the caller (re-login)
    except _TRANSIENT_FAULTS as exc:
        raise TransientConnectorError(f"vSphere unavailable{where}: {_fault_message(exc)}") from exc
    except vmodl.MethodFault as exc:
        raise OperationRejected(_fault_message(exc)) from exc
    except ssl.SSLCertVerificationError as exc:
        raise ConnectorError(f"TLS certificate not trusted{where}: {exc.verify_message}") from exc
    except TimeoutError as exc:
        raise TransientConnectorError(f"vSphere timed out{where}") from exc
    except http.client.HTTPException as exc:
        raise TransientConnectorError(f"vSphere HTTP error{where}: {exc}") from exc
    except OSError as exc:  # refused, reset, unreachable, TLS handshake errors
        reason = exc.strerror or exc.__class__.__name__
        raise TransientConnectorError(f"cannot reach vSphere{where}: {reason}") from exc


# --------------------------------------------------------------------------
# Helpers on a logged-in session


def _moid(obj: Any) -> str:
    return obj._moId


def _retrieve(
    content: Any,
    vimtype: type,
    props: list[str],
    container: Any = None,
) -> list[tuple[Any, dict[str, Any]]]:
    """Every object of `vimtype` below `container` with the given properties,
    in one property-collector round trip (plus continuation pages)."""
    view = content.viewManager.CreateContainerView(container or content.rootFolder, [vimtype], True)
    try:
        traversal = vmodl.query.PropertyCollector.TraversalSpec(
            name="view", type=vim.view.ContainerView, path="view", skip=False
        )
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=view, skip=True, selectSet=[traversal])],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vimtype, pathSet=props, all=False)],
        )
        return _collect(content, spec)
    finally:
        try:
            view.DestroyView()
        except Exception as exc:  # views die with the session anyway
            log.debug("DestroyView failed: %s", type(exc).__name__)


def _collect(content: Any, spec: Any) -> list[tuple[Any, dict[str, Any]]]:
    pc = content.propertyCollector
    options = vmodl.query.PropertyCollector.RetrieveOptions()
    out: list[tuple[Any, dict[str, Any]]] = []
    result = pc.RetrievePropertiesEx([spec], options)
    while result is not None:
        for item in result.objects or ():
            out.append((item.obj, {p.name: p.val for p in item.propSet or ()}))
        if not result.token:
            break
        result = pc.ContinueRetrievePropertiesEx(result.token)
    return out


def _properties(content: Any, objs: Iterable[Any], props: list[str]) -> dict[str, dict[str, Any]]:
    """Properties of specific objects, by moid, in one round trip. Every
    object's own type must have every property in `props`."""
    objs = list({_moid(o): o for o in objs}.values())
    if not objs:
        return {}
    types = {type(o) for o in objs}
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=o) for o in objs],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=t, pathSet=props, all=False) for t in types],
    )
    return {_moid(obj): values for obj, values in _collect(content, spec)}


_VM_PROPS = [
    "name",
    "parent",
    "parentVApp",
    "runtime.host",
    "datastore",
    "runtime.powerState",
    "config.instanceUuid",
    "config.template",
    "config.hardware.device",
    "resourcePool",
    *VM_DETAIL_PROPS,
]

# What inventory() reads, per type (name and parent come for every entity).
# Subtypes (ClusterComputeResource, StoragePod, VirtualApp, port groups) get
# their supertype's properties too.
INVENTORY_PROPS: dict[type, list[str]] = {
    vim.Datacenter: [],
    vim.Folder: [],
    vim.ComputeResource: ["host"],
    vim.HostSystem: [],
    vim.ResourcePool: ["owner"],
    vim.Datastore: [],
    vim.Network: [],
    vim.dvs.DistributedVirtualPortgroup: ["key"],
    vim.VirtualMachine: [p for p in _VM_PROPS if p not in ("name", "parent")],
}

# Managed object id prefixes, as vCenter (and vcsim) hand them out: the type
# whose prefix matches is asked first.
_ID_PREFIXES: dict[type, tuple[str, ...]] = {
    vim.VirtualMachine: ("vm-",),
    vim.HostSystem: ("host-",),
    vim.ClusterComputeResource: ("domain-c", "clustercomputeresource-"),
    vim.Datacenter: ("datacenter-",),
    vim.Folder: ("group-", "folder-"),
    vim.ResourcePool: ("resgroup-", "vapp-", "resourcepool-"),
    vim.Datastore: ("datastore-",),
    vim.dvs.DistributedVirtualPortgroup: ("dvportgroup-",),
    vim.OpaqueNetwork: ("network-o",),
    vim.Network: ("network-",),
}

# Most specific first: a server that accepts a supertype reference for a
# subtype's object must not hide a port group behind "Network".
_NETWORK_TYPES = (vim.dvs.DistributedVirtualPortgroup, vim.OpaqueNetwork, vim.Network)

# What read_objects reads: kinds of ticket refs -> types; a network by its id's prefix.
_KIND_TYPES: dict[str, type] = {
    "vm": vim.VirtualMachine,
    "template": vim.VirtualMachine,
    "host": vim.HostSystem,
    "cluster": vim.ClusterComputeResource,
    "datastore": vim.Datastore,
    "datastore_cluster": vim.StoragePod,
    "folder": vim.Folder,
    "root": vim.Folder,
    "datacenter": vim.Datacenter,
    "resource_pool": vim.ResourcePool,
}
_CONTAINER_KINDS = frozenset({"folder", "root", "datacenter", "cluster", "resource_pool"})
_READ_TYPES = tuple(INVENTORY_PROPS)


def _vimtype_of(kind: str, moid: str) -> type | None:
    if kind == "network":
        return next((t for t in _NETWORK_TYPES if any(moid.startswith(p) for p in _ID_PREFIXES[t])), vim.Network)
    return _KIND_TYPES.get(kind)


_HEX = frozenset("0123456789abcdefABCDEF")


def _escape_name(name: str) -> str:
    """A name as one inventory path element, escaped as vCenter escapes names
    ('%' as %25, '/' as %2f, '\\' as %5c). vCenter hands names out already
    escaped; an escape sequence in a name is left as it is."""
    out = []
    for i, ch in enumerate(name):
        if ch == "/":
            out.append("%2f")
        elif ch == "\\":
            out.append("%5c")
        elif ch == "%" and not (len(name) > i + 2 and name[i + 1] in _HEX and name[i + 2] in _HEX):
            out.append("%25")
        else:
            out.append(ch)
    return "".join(out)


class _Tree:
    """Names and parents of inventory objects by moid; paths from them."""

    def __init__(self, root_id: str):
        self.root_id = root_id
        self.names: dict[str, str] = {}
        self.parents: dict[str, str | None] = {root_id: None}
        self._paths: dict[str, str] = {root_id: "/"}

    def add(self, moid: str, name: str, parent_id: str | None) -> None:
        self.names[moid] = name
        if moid != self.root_id:
            self.parents[moid] = parent_id

    def path(self, moid: str) -> str:
        if moid in self._paths:
            return self._paths[moid]
        chain: list[str] = []
        current: str | None = moid
        seen: set[str] = set()
        while current is not None and current != self.root_id and current not in seen:
            seen.add(current)
            chain.append(_escape_name(self.names.get(current, current)))
            current = self.parents.get(current)
        path = "/" + "/".join(reversed(chain))
        self._paths[moid] = path
        return path


def _nic_network_id(card: Any, portgroups_by_key: dict[str, str], opaque_by_id: dict[str, str]) -> str | None:
    backing = card.backing
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
        key = getattr(backing.port, "portgroupKey", None) if backing.port is not None else None
        return portgroups_by_key.get(key) if key else None
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.OpaqueNetworkBackingInfo):
        return opaque_by_id.get(backing.opaqueNetworkId)
    network = getattr(backing, "network", None)
    return _moid(network) if network is not None else None


def _nics(devices: Iterable[Any], portgroups_by_key: dict[str, str], opaque_by_id: dict[str, str]) -> tuple[Nic, ...]:
    return tuple(
        Nic(
            key=int(d.key),
            label=str(getattr(d.deviceInfo, "label", "") or ""),
            network_id=_nic_network_id(d, portgroups_by_key, opaque_by_id),
        )
        for d in devices or ()
        if isinstance(d, vim.vm.device.VirtualEthernetCard)
    )


def _ethernet_cards(devices: Iterable[Any]) -> list[Any]:
    return [d for d in devices or () if isinstance(d, vim.vm.device.VirtualEthernetCard)]


def _normalize_uuid(value: str) -> str:
    try:
        return str(uuidlib.UUID(str(value)))
    except ValueError as exc:
        raise OperationRejected(f"not a valid instance uuid: {value!r}") from exc


def inventory_filter_spec(view: Any, root: Any) -> Any:
    """The property filter over the whole inventory: the container view's
    objects (datastores inside datastore clusters too) with the properties
    INVENTORY_PROPS names, and the root folder itself."""
    pc = vmodl.query.PropertyCollector
    return pc.FilterSpec(
        objectSet=[
            pc.ObjectSpec(
                obj=view,
                skip=True,
                selectSet=[
                    pc.TraversalSpec(
                        name="view",
                        type=vim.view.ContainerView,
                        path="view",
                        skip=False,
                        # Datastores inside a datastore cluster, for servers
                        # whose view does not descend into storage pods (vcsim).
                        selectSet=[pc.TraversalSpec(type=vim.Datacenter, path="datastore", skip=False)],
                    )
                ],
            ),
            pc.ObjectSpec(obj=root, skip=False),
        ],
        propSet=[pc.PropertySpec(type=vim.ManagedEntity, pathSet=["name", "parent"], all=False)]
        + [pc.PropertySpec(type=t, pathSet=props, all=False) for t, props in INVENTORY_PROPS.items() if props]
        + [pc.PropertySpec(type=vim.OpaqueNetwork, pathSet=["summary"], all=False)],
    )


def build_inventory(root_id: str, objects: Iterable[tuple[Any, dict[str, Any]]], roles: Iterable[Any]) -> Inventory:
    """The Inventory from (managed object, its properties) pairs as the
    inventory filter reports them, and the role list."""
    tree = _Tree(root_id)
    seen: dict[str, tuple[Any, dict[str, Any]]] = {}
    for obj, values in objects:
        moid = _moid(obj)
        if moid in seen:
            continue
        seen[moid] = (obj, values)
        parent = values.get("parent") or values.get("parentVApp")
        tree.add(moid, values.get("name", ""), _moid(parent) if parent is not None else None)

    portgroups = {
        v["key"]: moid
        for moid, (obj, v) in seen.items()
        if isinstance(obj, vim.dvs.DistributedVirtualPortgroup) and v.get("key")
    }
    opaques = {
        v["summary"].opaqueNetworkId: moid
        for moid, (obj, v) in seen.items()
        if isinstance(obj, vim.OpaqueNetwork) and getattr(v.get("summary"), "opaqueNetworkId", None)
    }
    # Compute resource -> its hosts; a cluster's id for its hosts and pools.
    members: dict[str, tuple[str, ...]] = {
        moid: tuple(_moid(h) for h in v.get("host") or ())
        for moid, (obj, v) in seen.items()
        if isinstance(obj, vim.ComputeResource)
    }
    clusters = {moid for moid, (obj, _) in seen.items() if isinstance(obj, vim.ClusterComputeResource)}

    def base(moid: str) -> dict[str, Any]:
        return {
            "id": moid,
            "name": tree.names.get(moid, ""),
            "parent_id": tree.parents.get(moid),
            "path": tree.path(moid),
        }

    kinds: dict[str, list[Any]] = {k: [] for k in ("dc", "folder", "cluster", "host", "pool", "pod", "ds", "net", "vm")}
    for moid, (obj, v) in seen.items():
        if isinstance(obj, vim.Datacenter):
            kinds["dc"].append(Datacenter(**base(moid)))
        elif isinstance(obj, vim.StoragePod):
            kinds["pod"].append(DatastoreCluster(**base(moid)))
        elif isinstance(obj, vim.Folder):
            kinds["folder"].append(Folder(**base(moid)))
        elif isinstance(obj, vim.ClusterComputeResource):
            kinds["cluster"].append(Cluster(**base(moid)))
        elif isinstance(obj, vim.HostSystem):
            parent = tree.parents.get(moid)
            kinds["host"].append(Host(**base(moid), cluster_id=parent if parent in clusters else None))
        elif isinstance(obj, vim.ResourcePool):
            owner = v.get("owner")
            owner_id = _moid(owner) if owner is not None else None
            kinds["pool"].append(
                ResourcePool(
                    **base(moid),
                    cluster_id=owner_id if owner_id in clusters else None,
                    host_ids=members.get(owner_id, ()) if owner_id else (),
                )
            )
        elif isinstance(obj, vim.Datastore):
            parent = tree.parents.get(moid)
            pod = parent if parent is not None and isinstance(seen.get(parent, (None,))[0], vim.StoragePod) else None
            kinds["ds"].append(Datastore(**base(moid), datastore_cluster_id=pod))
        elif isinstance(obj, vim.Network):
            kinds["net"].append(Network(**base(moid)))
        elif isinstance(obj, vim.VirtualMachine):
            kinds["vm"].append(VSphereConnector._vm_from(obj, v, tree, portgroups, opaques))

    def ordered(items: Iterable[Any]) -> tuple[Any, ...]:
        return tuple(sorted(items, key=lambda x: (x.path, x.id)))

    return Inventory(
        root_folder_id=root_id,
        datacenters=ordered(kinds["dc"]),
        folders=ordered(kinds["folder"]),
        clusters=ordered(kinds["cluster"]),
        hosts=ordered(kinds["host"]),
        resource_pools=ordered(kinds["pool"]),
        datastore_clusters=ordered(kinds["pod"]),
        datastores=ordered(kinds["ds"]),
        networks=ordered(kinds["net"]),
        vms=ordered(kinds["vm"]),
        roles=tuple(sorted((Role(id=r.roleId, name=r.name) for r in roles), key=lambda r: r.id)),
    )


class VSphereConnector(VSphereVmOperations, Connector):
    """vCenter (or vcsim) through pyVmomi; a VM's power, size, snapshots and
    removal come from VSphereVmOperations (vsphere_vm.py)."""

    operations = VM_OPERATIONS | frozenset(
        {
            "inventory",
            "read_objects",
            "find_vm_by_uuid",
            "read_vm",
            "clone_vm",
            "read_template",
            "relocate_vm",
            "permissions",
            "add_permission",
            "remove_permission",
            "task_state",
        }
    )

    def __init__(self, config: ConnectionConfig):
        super().__init__(config)
        self._key = _session_key(config)

    def __repr__(self) -> str:
        return f"VSphereConnector(url={self.config.url!r}, username={self.config.username!r})"

    # -- sessions ---------------------------------------------------------

    def service_instance(self) -> vim.ServiceInstance:
        """The shared, logged-in ServiceInstance for this endpoint."""
        return self._session().si

    def _session(self) -> _Session:
        with _sessions_lock:
            session = _sessions.get(self._key)
        if session is not None:
            return session
        with _key_lock(self._key):
            with _sessions_lock:
                session = _sessions.get(self._key)
            if session is None:
                session = _login(self.config)
                with _sessions_lock:
                    _sessions[self._key] = session
            return session

    def _relogin(self, stale: _Session) -> _Session:
        with _key_lock(self._key):
            with _sessions_lock:
                current = _sessions.get(self._key)
            if current is not None and current is not stale:
                return current  # another thread already logged in again
            log.info("vSphere session to %s expired, logging in again", self.config.url)
            session = _login(self.config)
            session.logins = stale.logins + 1
            with _sessions_lock:
                _sessions[self._key] = session
            return session

    def _call(self, fn: Callable[[Any], T], *, write: bool = False) -> T:
        """Run fn(content) with the shared session; translate errors. A read
        whose session the server dropped logs in again and runs once more. A
        write never runs twice: its session may have gone after the change
        was sent (while its task was polled, say), so it raises
        TransientConnectorError and the caller must check what happened."""
        session = self._session()
        if write and time.monotonic() - session.used_at > LOGIN_CHECK_SECONDS:
            # A session that lapsed while idle is renewed before anything is
            # sent; one that just answered (the re-check's read) has not.
            self.check_login()
            session = self._session()
        try:
            with _translate_errors(self.config):
                answer = fn(session.content)
            session.used_at = time.monotonic()
            return answer
        except vim.fault.NotAuthenticated as exc:
            if write:
                self._forget(session)  # the next call logs in again
                raise TransientConnectorError(
                    f"vSphere session to {self.config.url} expired during a change; whether the change was made "
                    "must be checked before it is tried again"
                ) from exc
            session = self._relogin(session)
        try:
            with _translate_errors(self.config):
                answer = fn(session.content)
            session.used_at = time.monotonic()
            return answer
        except vim.fault.NotAuthenticated as exc:
            raise TransientConnectorError(f"vSphere session to {self.config.url} keeps being rejected") from exc

    def _forget(self, stale: _Session) -> None:
        with _sessions_lock:
            if _sessions.get(self._key) is stale:
                del _sessions[self._key]

    def identify(self) -> ConnectorIdentity:
        return _identify(self.config)

    def check_login(self) -> None:
        def current(content: Any) -> None:
            if content.sessionManager.currentSession is None:
                raise vim.fault.NotAuthenticated()

        self._call(current)

    def close(self) -> None:
        with _sessions_lock:
            session = _sessions.pop(self._key, None)
        if session is not None:
            _logout(session)

    # -- lookups ----------------------------------------------------------

    def _resolve(
        self,
        content: Any,
        vimtypes: tuple[type, ...],
        ident: str,
        kind: str,
        props: list[str] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """The object of one of `vimtypes` whose managed object id is `ident`,
        with `props` (and its name). Ids only: an object of another type, or
        no object at all, is ObjectNotFound."""
        if not isinstance(ident, str) or not ident:
            raise ObjectNotFound(kind, str(ident))
        stub = content.propertyCollector._stub
        hinted = sorted(vimtypes, key=lambda t: not any(ident.startswith(p) for p in _ID_PREFIXES.get(t, ())))
        pathset = ["name", *[p for p in props or () if p != "name"]]
        for vimtype in hinted:
            ref = vimtype(ident, stub=stub)
            spec = vmodl.query.PropertyCollector.FilterSpec(
                objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=ref)],
                propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vimtype, pathSet=pathset, all=False)],
            )
            try:
                found = _collect(content, spec)
            except vmodl.fault.ManagedObjectNotFound:
                continue
            for obj, values in found:
                # The server names the object's own type; never trust ours.
                if _moid(obj) == ident and isinstance(obj, vimtypes):
                    return obj, values
        raise ObjectNotFound(kind, ident)

    def _find_vm_by_uuid(self, content: Any, instance_uuid: str) -> Any | None:
        return content.searchIndex.FindByUuid(None, _normalize_uuid(instance_uuid), True, True)

    def _network_keys(self, content: Any, devices: Iterable[Any]) -> tuple[dict[str, str], dict[str, str]]:
        """Port group key -> moid and opaque network id -> moid, read only when
        one of `devices` needs them."""
        cards = _ethernet_cards(devices)
        dvport = vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo
        opaque = vim.vm.device.VirtualEthernetCard.OpaqueNetworkBackingInfo
        portgroups: dict[str, str] = {}
        opaques: dict[str, str] = {}
        if any(isinstance(c.backing, dvport) for c in cards):
            for obj, v in _retrieve(content, vim.dvs.DistributedVirtualPortgroup, ["key"]):
                if v.get("key"):
                    portgroups[v["key"]] = _moid(obj)
        if any(isinstance(c.backing, opaque) for c in cards):
            for obj, v in _retrieve(content, vim.OpaqueNetwork, ["summary"]):
                summary = v.get("summary")
                if getattr(summary, "opaqueNetworkId", None):
                    opaques[summary.opaqueNetworkId] = _moid(obj)
        return portgroups, opaques

    def _ancestry(self, content: Any, obj: Any) -> _Tree:
        """Names and parents of `obj` and every ancestor, in one round trip."""
        up = vmodl.query.PropertyCollector.TraversalSpec(
            name="up",
            type=vim.ManagedEntity,
            path="parent",
            skip=False,
            selectSet=[vmodl.query.PropertyCollector.SelectionSpec(name="up")],
        )
        vapp = vmodl.query.PropertyCollector.TraversalSpec(
            name="vapp",
            type=vim.VirtualMachine,
            path="parentVApp",
            skip=False,
            selectSet=[vmodl.query.PropertyCollector.SelectionSpec(name="up")],
        )
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False, selectSet=[up, vapp])],
            propSet=[
                vmodl.query.PropertyCollector.PropertySpec(type=vim.ManagedEntity, pathSet=["name", "parent"]),
                vmodl.query.PropertyCollector.PropertySpec(type=vim.VirtualMachine, pathSet=["parentVApp"]),
            ],
        )
        tree = _Tree(_moid(content.rootFolder))
        for item, values in _collect(content, spec):
            parent = values.get("parent") or values.get("parentVApp")
            tree.add(_moid(item), values.get("name", ""), _moid(parent) if parent is not None else None)
        return tree

    def _vm_record(self, content: Any, vm: Any, values: dict[str, Any] | None = None) -> VirtualMachine:
        """The VM as the interface describes it; ManagedObjectNotFound when it
        is gone."""
        if values is None:
            values = _properties(content, [vm], _VM_PROPS).get(_moid(vm), {})
        tree = self._ancestry(content, vm)
        devices = values.get("config.hardware.device") or ()
        portgroups, opaques = self._network_keys(content, devices)
        return self._vm_from(vm, values, tree, portgroups, opaques)

    @staticmethod
    def _vm_from(
        vm: Any, values: dict[str, Any], tree: _Tree, portgroups: dict[str, str], opaques: dict[str, str]
    ) -> VirtualMachine:
        moid = _moid(vm)
        host = values.get("runtime.host")
        pool = values.get("resourcePool")
        return VirtualMachine(
            id=moid,
            name=values.get("name", ""),
            parent_id=tree.parents.get(moid),
            path=tree.path(moid),
            host_id=_moid(host) if host is not None else None,
            datastore_ids=tuple(_moid(d) for d in values.get("datastore") or ()),
            nics=_nics(values.get("config.hardware.device") or (), portgroups, opaques),
            power_state=str(values.get("runtime.powerState") or ""),
            instance_uuid=values.get("config.instanceUuid") or "",
            is_template=bool(values.get("config.template")),
            resource_pool_id=_moid(pool) if pool is not None else None,
            **vm_details(values),
        )

    # -- read -------------------------------------------------------------

    def inventory(self) -> Inventory:
        def read(content: Any) -> Inventory:
            return self._inventory(content)

        return self._call(read)

    def _inventory(self, content: Any) -> Inventory:
        """Every object in one property-collector retrieve (plus its
        continuation pages): a container view over the types we report, and
        the root folder itself."""
        root = content.rootFolder
        view = content.viewManager.CreateContainerView(root, list(INVENTORY_PROPS), True)
        try:
            objects = _collect(content, inventory_filter_spec(view, root))
        finally:
            try:
                view.DestroyView()
            except Exception as exc:  # views die with the session anyway
                log.debug("DestroyView failed: %s", type(exc).__name__)
        return build_inventory(_moid(root), objects, content.authorizationManager.roleList or [])

    def read_objects(self, objects: Mapping[str, str], *, roles: bool = True) -> Inventory:
        def read(content: Any) -> Inventory:
            return self._read_objects(content, objects, roles=roles)

        return self._call(read)

    def _read_objects(self, content: Any, objects: Mapping[str, str], *, roles: bool = True) -> Inventory:
        """One retrieve: each object by id, with a traversal that follows
        parents (paths, a host's cluster, a datastore's pod), a VM's pool, its
        compute resource's hosts, its datastores and networks; for a
        container, a container view over it (created and destroyed around the
        retrieve); the root folder and, with `roles`, the role list."""
        pc = vmodl.query.PropertyCollector
        stub = content.propertyCollector._stub
        root = content.rootFolder

        def follow(name: str, vimtype: type, path: str, *then: str) -> Any:
            return pc.TraversalSpec(
                name=name, type=vimtype, path=path, skip=False, selectSet=[pc.SelectionSpec(name=n) for n in then]
            )

        traversals = [
            follow("up", vim.ManagedEntity, "parent", "up"),
            follow("vapp", vim.VirtualMachine, "parentVApp", "up"),
            follow("vm-pool", vim.VirtualMachine, "resourcePool", "up", "pool-owner"),
            follow("pool-owner", vim.ResourcePool, "owner", "up", "hosts"),
            follow("hosts", vim.ComputeResource, "host", "up"),
            follow("vm-ds", vim.VirtualMachine, "datastore", "up"),
            follow("vm-net", vim.VirtualMachine, "network", "up"),
        ]
        names = [t.name for t in traversals]
        specs = [pc.ObjectSpec(obj=root, skip=False)]
        if roles:
            specs.append(pc.ObjectSpec(obj=content.authorizationManager, skip=False))
        views = []
        for moid, kind in objects.items():
            vimtype = _vimtype_of(kind, moid)
            if vimtype is None:
                continue
            ref = vimtype(moid, stub=stub)
            specs.append(pc.ObjectSpec(obj=ref, skip=False, selectSet=traversals))
            if kind in _CONTAINER_KINDS:
                view = content.viewManager.CreateContainerView(ref, list(INVENTORY_PROPS), True)
                views.append(view)
                beneath = pc.TraversalSpec(
                    type=vim.view.ContainerView,
                    path="view",
                    skip=False,
                    selectSet=[pc.SelectionSpec(name=n) for n in names]
                    + [pc.TraversalSpec(type=vim.Datacenter, path="datastore", skip=False)],
                )
                specs.append(pc.ObjectSpec(obj=view, skip=True, selectSet=[beneath]))
        spec = pc.FilterSpec(
            objectSet=specs,
            propSet=[pc.PropertySpec(type=vim.ManagedEntity, pathSet=["name", "parent"], all=False)]
            + [pc.PropertySpec(type=t, pathSet=props, all=False) for t, props in INVENTORY_PROPS.items() if props]
            + [
                pc.PropertySpec(type=vim.OpaqueNetwork, pathSet=["summary"], all=False),
                pc.PropertySpec(type=vim.AuthorizationManager, pathSet=["roleList"], all=False),
            ],
            # A deleted object is reported (and left out), not a fault for all.
            reportMissingObjectsInResults=True,
        )
        try:
            found = _collect(content, spec)
        finally:
            for view in views:
                try:
                    view.DestroyView()
                except Exception as exc:  # views die with the session anyway
                    log.debug("DestroyView failed: %s", type(exc).__name__)
        role_list: list[Any] = []
        entities = []
        for obj, values in found:
            if isinstance(obj, vim.AuthorizationManager):
                role_list = values.get("roleList") or []
            elif values and isinstance(obj, _READ_TYPES):
                entities.append((obj, values))
        return build_inventory(_moid(root), entities, role_list)

    def find_vm_by_uuid(self, instance_uuid: str) -> VirtualMachine | None:
        def find(content: Any) -> VirtualMachine | None:
            vm = self._find_vm_by_uuid(content, instance_uuid)
            return None if vm is None else self._vm_record(content, vm)

        return self._call(find)

    def read_vm(self, vm_id: str) -> VirtualMachine | None:
        def read(content: Any) -> VirtualMachine | None:
            if not isinstance(vm_id, str) or not vm_id:
                return None
            found = self._read_objects(content, {vm_id: "vm"}, roles=False).vms
            return next((vm for vm in found if vm.id == vm_id and not vm.is_template), None)

        return self._call(read)

    # -- tasks ------------------------------------------------------------

    def read_template(self, template_id: str) -> TemplateImage:
        def read(content: Any) -> TemplateImage:
            _, values = self._resolve(
                content,
                (vim.VirtualMachine,),
                template_id,
                "template",
                ["config.template", "config.guestId", "config.changeVersion", "config.hardware.device"],
            )
            if not values.get("config.template"):
                raise ObjectNotFound("template", template_id)
            disks = [
                d.backing.fileName
                for d in values.get("config.hardware.device") or ()
                if isinstance(d, vim.vm.device.VirtualDisk) and getattr(d.backing, "fileName", None)
            ]
            return TemplateImage(
                id=template_id,
                guest_id=str(values.get("config.guestId") or ""),
                change_version=str(values.get("config.changeVersion") or ""),
                disk_files=tuple(disks),
            )

        return self._call(read)

    def task_state(self, task_id: str) -> tuple[str, str]:
        def read(content: Any) -> tuple[str, str]:
            task = vim.Task(task_id, stub=content.taskManager._stub)
            # The state and error only: a whole TaskInfo of a snapshot task
            # from vcsim names a snapshot as its entity, which pyVmomi refuses.
            try:
                info = _properties(content, [task], ["info.state", "info.error"]).get(task_id, {})
            except vmodl.fault.ManagedObjectNotFound:
                info = {}
            if not info.get("info.state"):
                return "unknown", ""
            error = ""
            if info.get("info.error") is not None:
                error = getattr(info["info.error"], "localizedMessage", "") or _fault_message(info["info.error"])
            return str(info["info.state"]), error

        return self._call(read)

    def _wait(self, content: Any, task: Any, on_task: TaskCallback | None = None) -> Any:
        """Wait for the task to end; its result, or OperationRejected.
        `on_task` hears the task id first, so a caller can record it before
        the outcome is known. One look first (a quick task has ended by
        then); a task still running is followed with WaitForUpdatesEx on a
        collector of this thread's own, so its end is heard as it comes, not
        at the next look."""
        if on_task is not None:
            on_task(_moid(task))
        info = _properties(content, [task], ["info"]).get(_moid(task), {}).get("info")
        if info is None:
            raise TransientConnectorError(f"task {_moid(task)} vanished")
        if info.state not in _TASK_ENDED:
            info = self._follow_task(task)
        if info.state == vim.TaskInfo.State.error:
            raise OperationRejected(_task_failure(task, info))
        return info.result

    def _follow_task(self, task: Any) -> Any:
        """The task's info once it has ended (success or error)."""
        pc = vmodl.query.PropertyCollector
        collector = self._session().task_collector()
        watch = collector.CreateFilter(
            pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=task, skip=False)],
                propSet=[pc.PropertySpec(type=vim.Task, pathSet=["info"], all=False)],
            ),
            partialUpdates=False,
        )
        deadline = time.monotonic() + TASK_TIMEOUT
        version = ""
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TransientConnectorError(f"vSphere task {_moid(task)} still running after {TASK_TIMEOUT:.0f}s")
                options = pc.WaitOptions(maxWaitSeconds=max(1, min(TASK_WAIT_SECONDS, int(left))))
                update = collector.WaitForUpdatesEx(version, options)
                if update is None:
                    continue  # nothing changed within the wait
                version = update.version
                for filter_update in update.filterSet or ():
                    for object_update in filter_update.objectSet or ():
                        if object_update.kind == "leave":
                            raise TransientConnectorError(f"task {_moid(task)} vanished")
                        for change in object_update.changeSet or ():
                            info = change.val if change.name == "info" else None
                            if info is not None and info.state in _TASK_ENDED:
                                return info
        finally:
            try:
                watch.DestroyPropertyFilter()
            except Exception as exc:  # filters die with the session anyway
                log.debug("DestroyPropertyFilter failed: %s", type(exc).__name__)

    # -- clone ------------------------------------------------------------

    def _nic_backing(self, content: Any, network: Any, values: dict[str, Any]) -> Any:
        """The backing that connects a card to `network` (resolved by id)."""
        if isinstance(network, vim.dvs.DistributedVirtualPortgroup):
            pg = _properties(content, [network], ["key", "config.distributedVirtualSwitch"])[_moid(network)]
            dvs = pg["config.distributedVirtualSwitch"]
            switch_uuid = _properties(content, [dvs], ["uuid"])[_moid(dvs)]["uuid"]
            return vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
                port=vim.dvs.PortConnection(switchUuid=switch_uuid, portgroupKey=pg["key"])
            )
        if isinstance(network, vim.OpaqueNetwork):
            summary = _properties(content, [network], ["summary"])[_moid(network)]["summary"]
            return vim.vm.device.VirtualEthernetCard.OpaqueNetworkBackingInfo(
                opaqueNetworkId=summary.opaqueNetworkId,
                opaqueNetworkType=summary.opaqueNetworkType,
            )
        return vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName=values.get("name", ""), network=network)

    def _networks(self, content: Any, ids: Iterable[str]) -> dict[str, tuple[Any, dict[str, Any]]]:
        out: dict[str, tuple[Any, dict[str, Any]]] = {}
        for network_id in ids:
            if network_id not in out:
                out[network_id] = self._resolve(content, _NETWORK_TYPES, network_id, "network")
        return out

    @staticmethod
    def _reconnect(card: Any, backing: Any) -> Any:
        """An edit of `card` that puts it on `backing`."""
        card.backing = backing
        return vim.vm.device.VirtualDeviceSpec(operation=vim.vm.device.VirtualDeviceSpec.Operation.edit, device=card)

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
        wanted_uuid = _normalize_uuid(instance_uuid)
        if (host_id is None) == (cluster_id is None):
            raise OperationRejected("clone_vm needs exactly one of host_id or cluster_id")
        networks = tuple(networks)

        def clone(content: Any) -> OperationResult:
            existing = self._find_vm_by_uuid(content, wanted_uuid)
            if existing is not None:
                record = self._vm_record(content, existing)
                return OperationResult(
                    task_id=None,
                    result=f"VM {record.path} ({record.id}) already has instance uuid {wanted_uuid}",
                    already_done=True,
                    object_id=record.id,
                )

            tpl, tpl_values = self._resolve(
                content, (vim.VirtualMachine,), template_id, "template", ["config.hardware.device", "parent"]
            )
            cards = _ethernet_cards(tpl_values.get("config.hardware.device"))
            if len(cards) != len(networks):
                raise OperationRejected(f"the template has {len(cards)} network cards; {len(networks)} networks given")
            ds, _ = self._resolve(content, (vim.Datastore,), datastore_id, "datastore")
            nets = self._networks(content, networks)

            relocate = vim.vm.RelocateSpec(datastore=ds)
            target_host = None
            target_cluster = None
            if host_id is not None:
                target_host, hv = self._resolve(content, (vim.HostSystem,), host_id, "host", ["parent"])
                parent = hv["parent"]
                relocate.pool = _properties(content, [parent], ["resourcePool"])[_moid(parent)]["resourcePool"]
                relocate.host = target_host
            else:
                target_cluster, cv = self._resolve(
                    content, (vim.ClusterComputeResource,), cluster_id, "cluster", ["resourcePool"]
                )
                relocate.pool = cv["resourcePool"]

            if folder_id is not None:
                folder, _ = self._resolve(content, (vim.Folder,), folder_id, "folder")
            else:
                folder = self._vm_folder(content, tpl_values["parent"])
            self._refuse_name_clash(content, folder, name, wanted_uuid)

            backings = [self._nic_backing(content, *nets[n]) for n in networks]
            custom = (
                customization_spec(customization, len(cards), content.propertyCollector._stub.version)
                if customization is not None
                else None
            )
            spec = vim.vm.CloneSpec(
                customization=custom,
                location=relocate,
                template=False,
                powerOn=False,
                config=vim.vm.ConfigSpec(
                    numCPUs=int(cpus),
                    memoryMB=int(memory_mb),
                    instanceUuid=wanted_uuid,
                    deviceChange=[self._reconnect(card, b) for card, b in zip(cards, backings, strict=True)],
                ),
            )
            task = tpl.CloneVM_Task(folder=folder, name=name, spec=spec)
            new_vm = self._wait(content, task, on_task)

            notes = self._converge_clone(
                content, new_vm, target_host, target_cluster, relocate.pool, int(cpus), int(memory_mb)
            )
            notes += self._converge_networks(content, new_vm, networks, nets)
            if custom is not None:
                notes += self._converge_customization(content, new_vm, custom)
            record = self._vm_record(content, new_vm)
            wrong = [
                f"{nic.label} on {nic.network_id or 'nothing'}, not {want}"
                for nic, want in zip(record.nics, networks, strict=False)
                if nic.network_id != want
            ]
            if len(record.nics) != len(networks) or wrong:
                raise ConnectorError(
                    f"clone {record.id} is not connected as asked: "
                    + ("; ".join(wrong) or f"{len(record.nics)} network cards, {len(networks)} networks asked for")
                )
            where = f"host {record.host_id}" if record.host_id else "no host"
            result = f"cloned {tpl_values.get('name')!r} ({template_id}) to {record.path} ({record.id}) on {where}"
            if notes:
                result += " (" + "; ".join(notes) + ")"
            return OperationResult(task_id=_moid(task), result=result, object_id=record.id)

        return self._call(clone, write=True)

    @staticmethod
    def _refuse_name_clash(content: Any, folder: Any, name: str, wanted_uuid: str) -> None:
        """A VM of this name already in the destination folder carries another
        instance uuid: say so before vCenter fails the task."""
        children = _properties(content, [folder], ["childEntity"]).get(_moid(folder), {}).get("childEntity") or []
        vms = [c for c in children if isinstance(c, vim.VirtualMachine)]
        for other, values in _properties(content, vms, ["name", "config.instanceUuid"]).items():
            if values.get("name") == name:
                raise OperationRejected(
                    f"a VM named {name!r} already exists in folder {_moid(folder)} ({other}) with instance uuid "
                    f"{values.get('config.instanceUuid')}, not {wanted_uuid}"
                )

    @staticmethod
    def _vm_folder(content: Any, start: Any) -> Any:
        """The root VM folder of the datacenter holding `start`."""
        obj = start
        for _ in range(64):
            if isinstance(obj, vim.Datacenter):
                return _properties(content, [obj], ["vmFolder"])[_moid(obj)]["vmFolder"]
            parent = _properties(content, [obj], ["parent"]).get(_moid(obj), {}).get("parent")
            if parent is None:
                break
            obj = parent
        raise OperationRejected("cannot find the datacenter of the template")

    def _converge_clone(
        self,
        content: Any,
        vm: Any,
        target_host: Any,
        target_cluster: Any,
        pool: Any,
        cpus: int,
        memory_mb: int,
    ) -> list[str]:
        """Make sure the clone ended up as asked. vCenter applies placement
        and size in the clone itself; simulators may not, so check and fix."""
        notes: list[str] = []
        values = _properties(content, [vm], ["runtime.host", "config.hardware.numCPU", "config.hardware.memoryMB"])[
            _moid(vm)
        ]
        current = values.get("runtime.host")
        move_to = None
        if target_host is not None and (current is None or _moid(current) != _moid(target_host)):
            move_to = target_host
        elif target_cluster is not None:
            members = _properties(content, [target_cluster], ["host"])[_moid(target_cluster)].get("host") or []
            if members and (current is None or _moid(current) not in {_moid(h) for h in members}):
                move_to = members[0]
        if move_to is not None:
            self._wait(content, vm.RelocateVM_Task(spec=vim.vm.RelocateSpec(host=move_to, pool=pool)))
            notes.append("placement corrected")
        if values.get("config.hardware.numCPU") != cpus or values.get("config.hardware.memoryMB") != memory_mb:
            self._wait(content, vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(numCPUs=cpus, memoryMB=memory_mb)))
            notes.append("size corrected")
        return notes

    def _converge_networks(
        self, content: Any, vm: Any, networks: tuple[str, ...], nets: dict[str, tuple[Any, dict[str, Any]]]
    ) -> list[str]:
        """Reconnect any card of the clone that is not on its network."""
        devices = _properties(content, [vm], ["config.hardware.device"])[_moid(vm)].get("config.hardware.device")
        cards = _ethernet_cards(devices)
        portgroups, opaques = self._network_keys(content, cards)
        changes = [
            self._reconnect(card, self._nic_backing(content, *nets[want]))
            for card, want in zip(cards, networks, strict=False)
            if _nic_network_id(card, portgroups, opaques) != want
        ]
        if not changes:
            return []
        self._wait(content, vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=changes)))
        return ["networks corrected"]

    def _converge_customization(self, content: Any, vm: Any, custom: Any) -> list[str]:
        """vCenter keeps the clone's customization pending until its first
        boot; a server that dropped it (simulators) is given it again."""
        pending = _properties(content, [vm], ["config.tools.pendingCustomization"])[_moid(vm)]
        if pending.get("config.tools.pendingCustomization"):
            return []
        self._wait(content, vm.CustomizeVM_Task(spec=custom))
        return ["customization applied after the clone"]

    # -- relocate ---------------------------------------------------------

    def relocate_vm(
        self,
        *,
        vm_id: str,
        host_id: str,
        datastore_id: str | None = None,
        network_map: dict[str, str] | None = None,
        on_task: TaskCallback | None = None,
    ) -> OperationResult:
        wanted_map = dict(network_map or {})

        def relocate(content: Any) -> OperationResult:
            # The VM's devices (most of such a read) only when cards move.
            device_props = ["config.hardware.device"] if wanted_map else []
            read = self._relocation_read(content, vm_id, host_id, datastore_id, device_props)
            (obj, values), (target, target_values) = read["vm"], read["host"]
            ds, ds_values = read.get("datastore", (None, {}))
            nets = self._networks(content, wanted_map.values())

            cards = _ethernet_cards(values.get("config.hardware.device"))
            portgroups, opaques = self._network_keys(content, cards)
            moves = []  # (card, new network id)
            for card in cards:
                current_net = _nic_network_id(card, portgroups, opaques)
                if current_net in wanted_map and wanted_map[current_net] != current_net:
                    moves.append((card, wanted_map[current_net]))

            current = values.get("runtime.host")
            on_host = current is not None and _moid(current) == _moid(target)
            on_ds = ds is None or {_moid(d) for d in values.get("datastore") or ()} == {_moid(ds)}
            # Names for people, ids for the record.
            where = f"host {target_values.get('name')!r} ({host_id})"
            if ds is not None:
                where += f" and datastore {ds_values.get('name')!r} ({datastore_id})"
            if moves:
                where += ", " + ", ".join(
                    f"{card.deviceInfo.label} to {nets[n][1].get('name')!r} ({n})" for card, n in moves
                )
            vm_label = f"{values.get('name')!r} ({vm_id})"
            if on_host and on_ds and not moves:
                return OperationResult(
                    task_id=None,
                    result=f"VM {vm_label} is already on {where}",
                    already_done=True,
                    object_id=vm_id,
                )

            spec = vim.vm.RelocateSpec(host=target)
            if ds is not None:
                spec.datastore = ds
            target_parent = target_values.get("parent")
            # A VM's pool belongs to the compute resource of its host.
            current_parent = read["pool"][1].get("owner") if "pool" in read else None
            if current_parent is None and current is not None:
                current_parent = _properties(content, [current], ["parent"]).get(_moid(current), {}).get("parent")
            if target_parent is not None and (current_parent is None or _moid(current_parent) != _moid(target_parent)):
                # Leaving the cluster / standalone host: needs its resource pool.
                spec.pool = read["target_parent"][1].get("resourcePool") if "target_parent" in read else None
                if spec.pool is None:
                    spec.pool = _properties(content, [target_parent], ["resourcePool"])[_moid(target_parent)][
                        "resourcePool"
                    ]
            if moves:
                spec.deviceChange = [self._reconnect(card, self._nic_backing(content, *nets[n])) for card, n in moves]
            task = obj.RelocateVM_Task(spec=spec)
            self._wait(content, task, on_task)

            read = self._check_relocated(content, vm_id, host_id, datastore_id, {card.key: n for card, n in moves})
            return OperationResult(
                task_id=_moid(task), result=f"moved VM {vm_label} to {where}", object_id=vm_id, read_back=read
            )

        return self._call(relocate, write=True)

    def _relocation_read(
        self, content: Any, vm_id: str, host_id: str, datastore_id: str | None, device_props: list[str]
    ) -> dict[str, tuple[Any, dict[str, Any]]]:
        """What a relocation needs, in one retrieve: the VM ("vm") and its
        resource pool's owner ("pool"), the target host ("host") and its
        compute resource's root pool ("target_parent"), the datastore
        ("datastore"). Ids only: a missing object, or one of another type,
        is ObjectNotFound (the VM's first, then the host's, the datastore's)."""
        pc = vmodl.query.PropertyCollector
        stub = content.propertyCollector._stub
        wanted = [("vm", vim.VirtualMachine, vm_id, "VM"), ("host", vim.HostSystem, host_id, "host")]
        if datastore_id is not None:
            wanted.append(("datastore", vim.Datastore, datastore_id, "datastore"))
        for _role, _vimtype, ident, kind in wanted:
            if not isinstance(ident, str) or not ident:
                raise ObjectNotFound(kind, str(ident))
        follow = {
            "vm": [pc.TraversalSpec(type=vim.VirtualMachine, path="resourcePool", skip=False)],
            "host": [pc.TraversalSpec(type=vim.HostSystem, path="parent", skip=False)],
        }
        spec = pc.FilterSpec(
            objectSet=[
                pc.ObjectSpec(obj=vimtype(ident, stub=stub), skip=False, selectSet=follow.get(role, []))
                for role, vimtype, ident, _kind in wanted
            ],
            propSet=[
                pc.PropertySpec(
                    type=vim.VirtualMachine,
                    pathSet=["name", "runtime.host", "datastore", "resourcePool", *device_props],
                    all=False,
                ),
                pc.PropertySpec(type=vim.HostSystem, pathSet=["name", "parent"], all=False),
                pc.PropertySpec(type=vim.Datastore, pathSet=["name"], all=False),
                pc.PropertySpec(type=vim.ResourcePool, pathSet=["owner"], all=False),
                pc.PropertySpec(type=vim.ComputeResource, pathSet=["resourcePool"], all=False),
            ],
            reportMissingObjectsInResults=True,
        )
        found = {_moid(obj): (obj, values) for obj, values in _collect(content, spec)}
        read: dict[str, tuple[Any, dict[str, Any]]] = {}
        for role, vimtype, ident, kind in wanted:
            obj, values = found.get(ident, (None, {}))
            # The server names the object's own type; never trust ours.
            if obj is None or not isinstance(obj, vimtype) or "name" not in values:
                raise ObjectNotFound(kind, ident)
            read[role] = (obj, values)
        pool = read["vm"][1].get("resourcePool")
        if pool is not None and _moid(pool) in found:
            read["pool"] = found[_moid(pool)]
        parent = read["host"][1].get("parent")
        if parent is not None and _moid(parent) in found:
            read["target_parent"] = found[_moid(parent)]
        return read

    def _check_relocated(
        self, content: Any, vm_id: str, host_id: str, datastore_id: str | None, cards: dict[int, str]
    ) -> Inventory:
        """Read the VM back, as read_objects would (the read is handed on, so
        the caller need not read it again): on the host (and datastore),
        every moved card on its new network; ConnectorError otherwise."""
        read = self._read_objects(content, {vm_id: "vm"}, roles=False)
        vm = next((v for v in read.vms if v.id == vm_id), None)
        if vm is None:
            raise ConnectorError(f"VM {vm_id} was relocated but is no longer there")
        problems = []
        if vm.host_id != host_id:
            problems.append(f"it is on host {vm.host_id or 'none'}, not {host_id}")
        if datastore_id is not None and set(vm.datastore_ids) != {datastore_id}:
            problems.append(f"its disks are not on datastore {datastore_id} only")
        by_key = {nic.key: nic for nic in vm.nics}
        for key, want in cards.items():
            nic = by_key.get(key)
            seen = nic.network_id if nic is not None else None
            if seen != want:
                label = nic.label if nic is not None else f"card {key}"
                problems.append(f"{label} is on {seen or 'nothing'}, not {want}")
        if problems:
            raise ConnectorError(f"VM {vm_id} was relocated but " + "; ".join(problems))
        return read

    # -- permissions ------------------------------------------------------

    def _role_names(self, content: Any) -> dict[int, str]:
        return {r.roleId: r.name for r in content.authorizationManager.roleList or []}

    def _permission_records(
        self, content: Any, raw: Iterable[Any], fallback_entity: Any = None
    ) -> tuple[Permission, ...]:
        raw = list(raw)
        roles = self._role_names(content)
        entities = {}
        for p in raw:
            entity = p.entity or fallback_entity
            if entity is not None:
                entities[_moid(entity)] = entity
        names = _properties(content, entities.values(), ["name"])
        out = []
        for p in raw:
            entity = p.entity or fallback_entity
            entity_id = _moid(entity) if entity is not None else ""
            out.append(
                Permission(
                    principal=p.principal,
                    role=roles.get(p.roleId, str(p.roleId)),
                    entity_id=entity_id,
                    entity_name=names.get(entity_id, {}).get("name", ""),
                    propagate=bool(p.propagate),
                    is_group=bool(p.group),
                )
            )
        return tuple(sorted(out, key=lambda x: (x.entity_id, x.principal.lower(), x.is_group)))

    def _entity(self, content: Any, entity_id: str) -> Any:
        obj, _ = self._resolve(content, _PERMISSION_ENTITY_TYPES, entity_id, "entity")
        return obj

    def permissions(self, entity_id: str | None = None) -> tuple[Permission, ...]:
        def read(content: Any) -> tuple[Permission, ...]:
            am = content.authorizationManager
            if entity_id is None:
                return self._permission_records(content, am.RetrieveAllPermissions())
            obj = self._entity(content, entity_id)
            return self._permission_records(content, am.RetrieveEntityPermissions(entity=obj, inherited=False), obj)

        return self._call(read)

    @staticmethod
    def _same_principal(a: str, b: str) -> bool:
        return a.casefold() == b.casefold()

    def add_permission(
        self,
        *,
        principal: str,
        role: str,
        entity_id: str,
        propagate: bool = True,
        on_task: TaskCallback | None = None,  # permissions change without a vSphere task
    ) -> OperationResult:
        def add(content: Any) -> OperationResult:
            am = content.authorizationManager
            role_ids = [r.roleId for r in am.roleList or [] if r.name == role]
            if not role_ids:
                raise ObjectNotFound("role", role)
            role_id = role_ids[0]
            obj = self._entity(content, entity_id)
            existing = list(am.RetrieveEntityPermissions(entity=obj, inherited=False) or [])
            mine = [p for p in existing if not p.group and self._same_principal(p.principal, principal)]
            if mine and mine[0].roleId == role_id and bool(mine[0].propagate) == bool(propagate):
                return OperationResult(
                    task_id=None,
                    result=f"{principal!r} already has role {role!r} on {entity_id}",
                    already_done=True,
                    object_id=entity_id,
                )
            # vCenter merges the given rules into the entity's; some
            # implementations (vcsim) replace them all, so send the others too.
            keep = [
                vim.AuthorizationManager.Permission(
                    entity=obj, principal=p.principal, group=p.group, roleId=p.roleId, propagate=p.propagate
                )
                for p in existing
                if p.group or not self._same_principal(p.principal, principal)
            ]
            new = vim.AuthorizationManager.Permission(
                entity=obj, principal=principal, group=False, roleId=role_id, propagate=bool(propagate)
            )
            try:
                am.SetEntityPermissions(entity=obj, permission=keep + [new])
            except vim.fault.UserNotFound as exc:
                raise ObjectNotFound("principal", principal) from exc
            verb = "changed" if mine else "granted"
            return OperationResult(
                task_id=None,
                result=f"{verb} role {role!r} for {principal!r} on {entity_id}",
                object_id=entity_id,
            )

        return self._call(add, write=True)

    def remove_permission(self, *, principal: str, entity_id: str) -> OperationResult:
        def remove(content: Any) -> OperationResult:
            am = content.authorizationManager
            obj = self._entity(content, entity_id)
            existing = am.RetrieveEntityPermissions(entity=obj, inherited=False) or []
            mine = [p for p in existing if self._same_principal(p.principal, principal)]
            if not mine:
                return OperationResult(
                    task_id=None,
                    result=f"{principal!r} has no permission on {entity_id}",
                    already_done=True,
                    object_id=entity_id,
                )
            for p in mine:
                try:
                    am.RemoveEntityPermission(entity=obj, user=p.principal, isGroup=p.group)
                except vim.fault.NotFound:
                    log.debug("permission of %r on %s was already gone", p.principal, entity_id)
            return OperationResult(
                task_id=None,
                result=f"removed {principal!r}'s permission on {entity_id}",
                object_id=entity_id,
            )

        return self._call(remove, write=True)
