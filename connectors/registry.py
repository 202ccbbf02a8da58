"""Which backend serves which kind of hypervisor."""

from __future__ import annotations

from .base import ConnectionConfig, Connector, ConnectorError
from .vsphere import VSphereConnector

BACKENDS: dict[str, type[Connector]] = {"vsphere": VSphereConnector}


def connector_for(kind: str, config: ConnectionConfig) -> Connector:
    """A connector for a hypervisor of this kind; ConnectorError if unknown."""
    try:
        backend = BACKENDS[kind]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ConnectorError(f"unknown hypervisor kind {kind!r} (known: {known})") from None
    return backend(config)
