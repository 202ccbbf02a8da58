"""Writes to the portal's configuration (connectors, zones, catalogue,
policies), each audited with the actor and what changed."""

from django.db import transaction

from audit.drift import baseline_take
from audit.writer import record
from connectors.base import ConnectionConfig
from connectors.models import Connector
from connectors.registry import connector_for


def _snapshot(instance, fields) -> dict:
    return {name: _plain(getattr(instance, name)) for name in fields}


def _plain(value):
    if hasattr(value, "pk"):
        return value.pk
    return value


def config_save(*, actor, instance, data: dict, action: str | None = None):
    """Create or update `instance` with `data` (already validated) and audit
    the change with before/after values of the fields that moved."""
    created = instance.pk is None
    before = {} if created else _snapshot(instance, data)
    for name, value in data.items():
        setattr(instance, name, value)
    with transaction.atomic():
        instance.full_clean()
        instance.save()
        after = _snapshot(instance, data)
        changes = {k: {"from": before.get(k), "to": v} for k, v in after.items() if created or before.get(k) != v}
        record(
            action or f"config.{instance._meta.model_name}.{'created' if created else 'updated'}",
            actor=actor,
            obj=instance,
            details={"name": str(instance), "changes": changes},
        )
    return instance


def connector_check_login(*, url: str, username: str, password: str, verify_tls: bool, kind: str = "vsphere") -> None:
    """Log in once with these credentials; raises ConnectorError saying why not."""
    connector_for(
        kind, ConnectionConfig(url=url, username=username, password=password, verify_tls=verify_tls)
    ).check_login()


def connector_register(
    *, actor, name: str, url: str, username: str, password: str, verify_tls: bool = True, kind: str = "vsphere"
) -> Connector:
    """Register a hypervisor after checking that the credentials log in, and
    take its drift baseline (what it holds now needs no ticket). The password
    is stored encrypted and never audited."""
    connector_check_login(url=url, username=username, password=password, verify_tls=verify_tls, kind=kind)
    connector = Connector(name=name, kind=kind, url=url, username=username, verify_tls=verify_tls)
    connector.set_password(password)
    with transaction.atomic():
        config_save(
            actor=actor,
            instance=connector,
            data={"name": name, "kind": kind, "url": url, "username": username, "verify_tls": verify_tls},
        )
        baseline_take(connector=connector, actor=actor)
    return connector


def connector_update(*, actor, connector: Connector, data: dict, password: str | None = None) -> Connector:
    if password is not None or {"url", "username", "verify_tls"} & set(data):
        connector_check_login(
            url=data.get("url", connector.url),
            username=data.get("username", connector.username),
            password=password if password is not None else connector.connection_config().password,
            verify_tls=data.get("verify_tls", connector.verify_tls),
            kind=connector.kind,
        )
    with transaction.atomic():
        if password is not None:
            connector.set_password(password)
            record("config.connector.password_changed", actor=actor, obj=connector, details={"name": connector.name})
        return config_save(actor=actor, instance=connector, data=data)
