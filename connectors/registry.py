"""Which backend serves which kind of hypervisor."""

from __future__ import annotations

from .base import ConnectionConfig, Connector, ConnectorError
from .vsphere import VSphereConnector

BACKENDS: dict[str, type[Connector]] = {"vsphere": VSphereConnector}


def backend_class(kind: str) -> type[Connector]:
    """The backend for a hypervisor of this kind; ConnectorError if unknown."""
    try:
        return BACKENDS[kind]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ConnectorError(f"unknown hypervisor kind {kind!r} (known: {known})") from None


def connector_for(kind: str, config: ConnectionConfig) -> Connector:
    """A connector for a hypervisor of this kind; ConnectorError if unknown."""
    return backend_class(kind)(config)
