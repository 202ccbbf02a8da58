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

Objects are named as the inventory shows them, by name or by managed object
id ("vm-42", "host-17", ...). Operations wait for their vSphere task and
return its id. Where the desired state already holds nothing is sent and the
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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    Datastore,
    Folder,
    Host,
    IdentityMismatch,
    Inventory,
    Network,
    ObjectNotFound,
    OperationRejected,
    OperationResult,
    Permission,
    Role,
    TaskCallback,
    TransientConnectorError,
    VirtualMachine,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds to wait for the TCP/TLS handshake and the API version document.
CONNECT_TIMEOUT = 5.0
#: Seconds to wait for any one SOAP call (tasks are polled, not waited on).
REQUEST_TIMEOUT = 120.0
#: Seconds an idle pooled HTTP connection is kept.
POOL_IDLE_TIMEOUT = 900
#: Longest wait for one vSphere task.
TASK_TIMEOUT = 3600.0

# Kinds of entity add_permission / remove_permission / permissions accept.
_PERMISSION_ENTITY_TYPES = (
    vim.VirtualMachine,
    vim.HostSystem,
    vim.ClusterComputeResource,
    vim.Datacenter,
    vim.Folder,
)

_TRANSIENT_FAULTS = (
    vim.fault.HostConnectFault,
    vmodl.fault.HostCommunication,
    vmodl.fault.RequestCanceled,
)


# --------------------------------------------------------------------------
# Sessions


@dataclass
class _Session:
    si: vim.ServiceInstance
    content: Any
    logins: int = 1


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
    "runtime.host",
    "datastore",
    "runtime.powerState",
    "config.instanceUuid",
    "config.template",
]


def _normalize_uuid(value: str) -> str:
    try:
        return str(uuidlib.UUID(str(value)))
    except ValueError as exc:
        raise OperationRejected(f"not a valid instance uuid: {value!r}") from exc


class VSphereConnector(Connector):
    """vCenter (or vcsim) through pyVmomi."""

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

    def _call(self, fn: Callable[[Any], T]) -> T:
        """Run fn(content) with the shared session; log in again once if the
        server says the session is gone; translate errors."""
        session = self._session()
        try:
            with _translate_errors(self.config):
                return fn(session.content)
        except vim.fault.NotAuthenticated:
            session = self._relogin(session)
        try:
            with _translate_errors(self.config):
                return fn(session.content)
        except vim.fault.NotAuthenticated as exc:
            raise TransientConnectorError(f"vSphere session to {self.config.url} keeps being rejected") from exc

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

    def _find(
        self,
        content: Any,
        vimtypes: tuple[type, ...],
        ident: str,
        kind: str,
        props: list[str] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """The one object of the given types named `ident` (name or moid)."""
        candidates: list[tuple[Any, dict[str, Any]]] = []
        for vimtype in vimtypes:
            candidates.extend(_retrieve(content, vimtype, ["name"]))
        match = [c for c in candidates if _moid(c[0]) == ident]
        if not match:
            # A ClusterComputeResource is also a ComputeResource: de-duplicate.
            unique = {_moid(c[0]): c for c in candidates if c[1].get("name") == ident}
            if not unique:
                raise ObjectNotFound(kind, ident)
            if len(unique) > 1:
                ids = ", ".join(sorted(unique))
                raise OperationRejected(f"{kind} name {ident!r} is ambiguous ({ids}); name it by managed object id")
            match = list(unique.values())
        obj, values = match[0]
        extra = [p for p in (props or []) if p != "name"]
        if extra:
            values = {**values, **_properties(content, [obj], extra).get(_moid(obj), {})}
        return obj, values

    def _find_vm_by_uuid(self, content: Any, instance_uuid: str) -> Any | None:
        return content.searchIndex.FindByUuid(None, _normalize_uuid(instance_uuid), True, True)

    def _vm_record(self, content: Any, vm: Any, values: dict[str, Any] | None = None) -> VirtualMachine:
        if values is None:
            values = _properties(content, [vm], _VM_PROPS).get(_moid(vm), {})
        host = values.get("runtime.host")
        refs = [host] if host is not None else []
        datastores = list(values.get("datastore") or ())
        names = _properties(content, refs + datastores, ["name"])
        return VirtualMachine(
            id=_moid(vm),
            name=values.get("name", ""),
            host=names.get(_moid(host), {}).get("name") if host is not None else None,
            datastores=tuple(names.get(_moid(d), {}).get("name", _moid(d)) for d in datastores),
            power_state=str(values.get("runtime.powerState") or ""),
            instance_uuid=values.get("config.instanceUuid") or "",
            is_template=bool(values.get("config.template")),
        )

    # -- read -------------------------------------------------------------

    def inventory(self) -> Inventory:
        def read(content: Any) -> Inventory:
            clusters = _retrieve(content, vim.ClusterComputeResource, ["name"])
            cluster_names = {_moid(o): v.get("name", "") for o, v in clusters}
            hosts = _retrieve(content, vim.HostSystem, ["name", "parent"])
            host_names = {_moid(o): v.get("name", "") for o, v in hosts}
            datastores = _retrieve(content, vim.Datastore, ["name"])
            ds_names = {_moid(o): v.get("name", "") for o, v in datastores}
            networks = _retrieve(content, vim.Network, ["name"])
            folders = _retrieve(content, vim.Folder, ["name"])
            vms = _retrieve(content, vim.VirtualMachine, _VM_PROPS)
            roles = content.authorizationManager.roleList or []

            root = content.rootFolder
            folder_items = [(root, {"name": root.name})] if all(_moid(o) != _moid(root) for o, _ in folders) else []
            folder_items += folders

            def host_cluster(values: dict[str, Any]) -> str | None:
                parent = values.get("parent")
                if parent is None:
                    return None
                return cluster_names.get(_moid(parent))

            vm_records = []
            for obj, v in vms:
                host = v.get("runtime.host")
                vm_records.append(
                    VirtualMachine(
                        id=_moid(obj),
                        name=v.get("name", ""),
                        host=host_names.get(_moid(host)) if host is not None else None,
                        datastores=tuple(ds_names.get(_moid(d), _moid(d)) for d in v.get("datastore") or ()),
                        power_state=str(v.get("runtime.powerState") or ""),
                        instance_uuid=v.get("config.instanceUuid") or "",
                        is_template=bool(v.get("config.template")),
                    )
                )

            def by_name(items: Iterable[Any]) -> tuple[Any, ...]:
                return tuple(sorted(items, key=lambda x: (x.name, x.id)))

            return Inventory(
                clusters=by_name(Cluster(id=_moid(o), name=v.get("name", "")) for o, v in clusters),
                hosts=by_name(Host(id=_moid(o), name=v.get("name", ""), cluster=host_cluster(v)) for o, v in hosts),
                datastores=by_name(Datastore(id=_moid(o), name=v.get("name", "")) for o, v in datastores),
                networks=by_name(Network(id=_moid(o), name=v.get("name", "")) for o, v in networks),
                folders=by_name(Folder(id=_moid(o), name=v.get("name", "")) for o, v in folder_items),
                vms=by_name(vm_records),
                roles=tuple(sorted((Role(id=r.roleId, name=r.name) for r in roles), key=lambda r: r.id)),
            )

        return self._call(read)

    def find_vm_by_uuid(self, instance_uuid: str) -> VirtualMachine | None:
        def find(content: Any) -> VirtualMachine | None:
            vm = self._find_vm_by_uuid(content, instance_uuid)
            return None if vm is None else self._vm_record(content, vm)

        return self._call(find)

    # -- tasks ------------------------------------------------------------

    def task_state(self, task_id: str) -> tuple[str, str]:
        def read(content: Any) -> tuple[str, str]:
            task = vim.Task(task_id, stub=content.taskManager._stub)
            try:
                info = _properties(content, [task], ["info"]).get(task_id, {}).get("info")
            except vmodl.fault.ManagedObjectNotFound:
                info = None
            if info is None:
                return "unknown", ""
            error = ""
            if info.error is not None:
                error = getattr(info.error, "localizedMessage", "") or _fault_message(info.error)
            return str(info.state), error

        return self._call(read)

    def _wait(self, content: Any, task: Any, on_task: TaskCallback | None = None) -> Any:
        """Poll the task until it ends; its result, or OperationRejected.
        `on_task` hears the task id first, so a caller can record it before
        the outcome is known."""
        if on_task is not None:
            on_task(_moid(task))
        deadline = time.monotonic() + TASK_TIMEOUT
        delay = 0.05
        while True:
            info = _properties(content, [task], ["info"]).get(_moid(task), {}).get("info")
            if info is None:
                raise TransientConnectorError(f"task {_moid(task)} vanished")
            if info.state == vim.TaskInfo.State.success:
                return info.result
            if info.state == vim.TaskInfo.State.error:
                # pyVmomi hands the LocalizedMethodFault over as the fault
                # itself, its localized message in .msg.
                fault = info.error
                inner = getattr(fault, "fault", None) or fault
                message = (getattr(fault, "localizedMessage", None) or getattr(inner, "msg", None) or "").strip()
                kind = getattr(type(inner), "_wsdlName", "") if inner is not None else ""
                if not message and inner is not None:
                    message = _fault_message(inner)
                elif kind and kind not in message:
                    message = f"{message} [{kind}]"
                raise OperationRejected(
                    f"vSphere task {_moid(task)} ({info.descriptionId}) failed: {message or 'unknown error'}"
                )
            if time.monotonic() > deadline:
                raise TransientConnectorError(f"vSphere task {_moid(task)} still running after {TASK_TIMEOUT:.0f}s")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    # -- clone ------------------------------------------------------------

    @staticmethod
    def _nic_backing(content: Any, network: Any) -> Any:
        if isinstance(network, vim.dvs.DistributedVirtualPortgroup):
            values = _properties(content, [network], ["key", "config.distributedVirtualSwitch"])[_moid(network)]
            dvs = values["config.distributedVirtualSwitch"]
            switch_uuid = _properties(content, [dvs], ["uuid"])[_moid(dvs)]["uuid"]
            return vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
                port=vim.dvs.PortConnection(switchUuid=switch_uuid, portgroupKey=values["key"])
            )
        if isinstance(network, vim.OpaqueNetwork):
            summary = _properties(content, [network], ["summary"])[_moid(network)]["summary"]
            return vim.vm.device.VirtualEthernetCard.OpaqueNetworkBackingInfo(
                opaqueNetworkId=summary.opaqueNetworkId,
                opaqueNetworkType=summary.opaqueNetworkType,
            )
        name = _properties(content, [network], ["name"])[_moid(network)]["name"]
        return vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName=name, network=network)

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
        wanted_uuid = _normalize_uuid(instance_uuid)
        if (host is None) == (cluster is None):
            raise OperationRejected("clone_vm needs exactly one of host or cluster")

        def clone(content: Any) -> OperationResult:
            existing = self._find_vm_by_uuid(content, wanted_uuid)
            if existing is not None:
                record = self._vm_record(content, existing)
                return OperationResult(
                    task_id=None,
                    result=f"VM {record.name!r} ({record.id}) already has instance uuid {wanted_uuid}",
                    already_done=True,
                    object_id=record.id,
                )

            tpl, tpl_values = self._find(
                content, (vim.VirtualMachine,), template, "template", ["config.hardware.device", "parent"]
            )
            clash = [
                (o, v)
                for o, v in _retrieve(content, vim.VirtualMachine, ["name", "config.instanceUuid"])
                if v.get("name") == name
            ]
            if clash:
                other, values = clash[0]
                raise OperationRejected(
                    f"a VM named {name!r} already exists ({_moid(other)}) with instance uuid "
                    f"{values.get('config.instanceUuid')}, not {wanted_uuid}"
                )
            ds, _ = self._find(content, (vim.Datastore,), datastore, "datastore")
            net, _ = self._find(content, (vim.Network,), network, "network")

            relocate = vim.vm.RelocateSpec(datastore=ds)
            target_host = None
            target_cluster = None
            if host is not None:
                target_host, hv = self._find(content, (vim.HostSystem,), host, "host", ["parent"])
                parent = hv["parent"]
                relocate.pool = _properties(content, [parent], ["resourcePool"])[_moid(parent)]["resourcePool"]
                relocate.host = target_host
            else:
                target_cluster, cv = self._find(
                    content, (vim.ClusterComputeResource,), cluster, "cluster", ["resourcePool", "host"]
                )
                relocate.pool = cv["resourcePool"]

            devices = tpl_values.get("config.hardware.device") or []
            nics = [d for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard)]
            backing = self._nic_backing(content, net)
            if nics:
                nic = nics[0]
                nic.backing = backing
                nic_change = vim.vm.device.VirtualDeviceSpec(
                    operation=vim.vm.device.VirtualDeviceSpec.Operation.edit, device=nic
                )
            else:
                nic = vim.vm.device.VirtualVmxnet3(
                    key=-100,
                    backing=backing,
                    connectable=vim.vm.device.VirtualDevice.ConnectInfo(
                        startConnected=True, allowGuestControl=True, connected=False
                    ),
                )
                nic_change = vim.vm.device.VirtualDeviceSpec(
                    operation=vim.vm.device.VirtualDeviceSpec.Operation.add, device=nic
                )

            spec = vim.vm.CloneSpec(
                location=relocate,
                template=False,
                powerOn=False,
                config=vim.vm.ConfigSpec(
                    numCPUs=int(cpus),
                    memoryMB=int(memory_mb),
                    instanceUuid=wanted_uuid,
                    deviceChange=[nic_change],
                ),
            )
            folder = self._vm_folder(content, tpl_values["parent"])
            task = tpl.CloneVM_Task(folder=folder, name=name, spec=spec)
            new_vm = self._wait(content, task, on_task)

            notes = self._converge_clone(
                content, new_vm, target_host, target_cluster, relocate.pool, int(cpus), int(memory_mb)
            )
            record = self._vm_record(content, new_vm)
            where = f"host {record.host}" if record.host else "no host"
            result = f"cloned {template!r} to {record.name!r} ({record.id}) on {where}"
            if notes:
                result += " (" + "; ".join(notes) + ")"
            return OperationResult(task_id=_moid(task), result=result, object_id=record.id)

        return self._call(clone)

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

    # -- relocate ---------------------------------------------------------

    def relocate_vm(
        self, *, vm: str, host: str, datastore: str | None = None, on_task: TaskCallback | None = None
    ) -> OperationResult:
        def relocate(content: Any) -> OperationResult:
            obj, values = self._find(
                content, (vim.VirtualMachine,), vm, "VM", ["runtime.host", "datastore", "resourcePool"]
            )
            target, target_values = self._find(content, (vim.HostSystem,), host, "host", ["parent"])
            ds = None
            if datastore is not None:
                ds, _ = self._find(content, (vim.Datastore,), datastore, "datastore")
            current = values.get("runtime.host")
            on_host = current is not None and _moid(current) == _moid(target)
            on_ds = ds is None or {_moid(d) for d in values.get("datastore") or ()} == {_moid(ds)}
            vm_name = values.get("name", vm)
            host_name = target_values.get("name", host)
            if on_host and on_ds:
                where = f"{host_name!r}" + (f" and datastore {datastore!r}" if ds is not None else "")
                return OperationResult(
                    task_id=None,
                    result=f"VM {vm_name!r} is already on {where}",
                    already_done=True,
                    object_id=_moid(obj),
                )
            spec = vim.vm.RelocateSpec(host=target)
            if ds is not None:
                spec.datastore = ds
            target_parent = target_values.get("parent")
            current_parent = None
            if current is not None:
                current_parent = _properties(content, [current], ["parent"]).get(_moid(current), {}).get("parent")
            if target_parent is not None and (current_parent is None or _moid(current_parent) != _moid(target_parent)):
                # Leaving the cluster / standalone host: needs its resource pool.
                spec.pool = _properties(content, [target_parent], ["resourcePool"])[_moid(target_parent)][
                    "resourcePool"
                ]
            task = obj.RelocateVM_Task(spec=spec)
            self._wait(content, task, on_task)
            where = f"{host_name!r}" + (f" and datastore {datastore!r}" if ds is not None else "")
            return OperationResult(task_id=_moid(task), result=f"moved VM {vm_name!r} to {where}", object_id=_moid(obj))

        return self._call(relocate)

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
                    entity=names.get(entity_id, {}).get("name", entity_id),
                    entity_id=entity_id,
                    propagate=bool(p.propagate),
                    is_group=bool(p.group),
                )
            )
        return tuple(sorted(out, key=lambda x: (x.entity_id, x.principal.lower(), x.is_group)))

    def _entity(self, content: Any, entity: str) -> tuple[Any, str]:
        obj, values = self._find(content, _PERMISSION_ENTITY_TYPES, entity, "entity")
        return obj, values.get("name", entity)

    def permissions(self, entity: str | None = None) -> tuple[Permission, ...]:
        def read(content: Any) -> tuple[Permission, ...]:
            am = content.authorizationManager
            if entity is None:
                return self._permission_records(content, am.RetrieveAllPermissions())
            obj, _ = self._entity(content, entity)
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
        entity: str,
        propagate: bool = True,
        on_task: TaskCallback | None = None,  # permissions change without a vSphere task
    ) -> OperationResult:
        def add(content: Any) -> OperationResult:
            am = content.authorizationManager
            role_ids = [r.roleId for r in am.roleList or [] if r.name == role]
            if not role_ids:
                raise ObjectNotFound("role", role)
            role_id = role_ids[0]
            obj, entity_name = self._entity(content, entity)
            existing = list(am.RetrieveEntityPermissions(entity=obj, inherited=False) or [])
            mine = [p for p in existing if not p.group and self._same_principal(p.principal, principal)]
            if mine and mine[0].roleId == role_id and bool(mine[0].propagate) == bool(propagate):
                return OperationResult(
                    task_id=None,
                    result=f"{principal!r} already has role {role!r} on {entity_name!r}",
                    already_done=True,
                    object_id=_moid(obj),
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
                result=f"{verb} role {role!r} for {principal!r} on {entity_name!r}",
                object_id=_moid(obj),
            )

        return self._call(add)

    def remove_permission(self, *, principal: str, entity: str) -> OperationResult:
        def remove(content: Any) -> OperationResult:
            am = content.authorizationManager
            obj, entity_name = self._entity(content, entity)
            existing = am.RetrieveEntityPermissions(entity=obj, inherited=False) or []
            mine = [p for p in existing if self._same_principal(p.principal, principal)]
            if not mine:
                return OperationResult(
                    task_id=None,
                    result=f"{principal!r} has no permission on {entity_name!r}",
                    already_done=True,
                    object_id=_moid(obj),
                )
            for p in mine:
                try:
                    am.RemoveEntityPermission(entity=obj, user=p.principal, isGroup=p.group)
                except vim.fault.NotFound:
                    log.debug("permission of %r on %s was already gone", p.principal, _moid(obj))
            return OperationResult(
                task_id=None,
                result=f"removed {principal!r}'s permission on {entity_name!r}",
                object_id=_moid(obj),
            )

        return self._call(remove)
