"""Writes to connectors: registration, changes, and what the worker does when
an endpoint is not the hypervisor a connector is pinned to.

A connector is pinned at registration to the vCenter that answered (its
instance UUID and TLS certificate fingerprint, read before logging in) and
re-pinned only when its URL changes, which needs a new password: the stored
password is never sent to an endpoint it was not registered with. Passwords
arrive sealed to the worker's key and are opened only here, in the worker or
the server shell; they are never audited.
"""

from __future__ import annotations

import dataclasses

from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals.errors import InvalidInput
from audit.drift import baseline_take
from audit.models import Finding, FindingKind
from audit.writer import record
from connectors import credentials
from connectors.base import ConnectionConfig, ConnectorIdentity, IdentityMismatch
from connectors.models import Connector
from connectors.registry import connector_for

# What connector_update may change; the password comes separately, sealed.
UPDATABLE = ("name", "url", "username", "verify_tls")
# Fields whose change would send the stored password somewhere it was not
# meant for, or under other terms.
NEEDS_NEW_PASSWORD = ("url", "username", "verify_tls")
PIN_FIELDS = ("instance_uuid", "tls_fingerprint")


def _pinned(config: ConnectionConfig, identity: ConnectorIdentity) -> ConnectionConfig:
    return dataclasses.replace(
        config, instance_uuid=identity.instance_uuid or None, tls_fingerprint=identity.tls_fingerprint or None
    )


def connector_pin_and_login(*, kind: str, config: ConnectionConfig) -> ConnectorIdentity:
    """Read who answers at config.url (without logging in), then log in with
    that identity expected, so the login cannot reach another endpoint than
    the one just identified. Raises ConnectorError saying why not."""
    identity = connector_for(kind, config).identify()
    connector_for(kind, _pinned(config, identity)).check_login()
    return identity


def _plain(connector: Connector, fields) -> dict:
    return {name: getattr(connector, name) for name in fields}


def connector_register(
    *,
    actor=None,
    actor_name: str = "",
    name: str,
    url: str,
    username: str,
    sealed_password: str,
    verify_tls: bool = True,
    kind: str = Connector.Kind.VSPHERE,
) -> Connector:
    """Register a hypervisor: identify it, log in with that identity pinned,
    store the connector with its pin and take its drift baseline (what it
    holds now needs no ticket). Worker or shell only: the password is opened
    here (CredentialsUnavailable elsewhere). Raises ConnectorError when the
    endpoint cannot be identified or refuses the login; nothing is stored."""
    password = credentials.unseal(sealed_password)
    config = ConnectionConfig(url=url, username=username, password=password, verify_tls=verify_tls)
    identity = connector_pin_and_login(kind=kind, config=config)
    connector = Connector(
        name=name,
        kind=kind,
        url=url,
        username=username,
        verify_tls=verify_tls,
        instance_uuid=identity.instance_uuid,
        tls_fingerprint=identity.tls_fingerprint,
    )
    connector.set_sealed_password(sealed_password)
    fields = ("name", "kind", "url", "username", "verify_tls", *PIN_FIELDS)
    with transaction.atomic():
        connector.full_clean()
        connector.save()
        record(
            "config.connector.created",
            actor=actor,
            actor_name=actor_name,
            obj=connector,
            details={
                "name": connector.name,
                "changes": {k: {"from": None, "to": v} for k, v in _plain(connector, fields).items()},
            },
        )
        baseline_take(connector=connector, actor=actor, **({"actor_name": actor_name} if actor_name else {}))
    return connector


def connector_update(
    *,
    actor=None,
    actor_name: str = "",
    connector: Connector,
    data: dict,
    sealed_password: str | None = None,
    repin: bool = False,
) -> Connector:
    """Change a connector. A new URL, user name or TLS setting needs a new
    password (InvalidInput on "password" otherwise): the stored one is never
    sent to another endpoint. After a URL change the pin is taken anew from
    the new endpoint; otherwise the existing pin must hold for the login.
    `repin` takes the pin anew at the same URL (a renewed vCenter
    certificate, a rebuilt vCenter) and also needs the password given.
    Worker or shell only when credentials are checked. Nothing is stored
    when a check fails."""
    unknown = sorted(set(data) - set(UPDATABLE))
    if unknown:
        raise InvalidInput({name: ["This field cannot be changed here."] for name in unknown})
    moved = {k: v for k, v in data.items() if getattr(connector, k) != v}
    if sealed_password is None and (repin or set(moved) & set(NEEDS_NEW_PASSWORD)):
        raise InvalidInput(
            {
                "password": [
                    "A new password is needed when the URL, user name or TLS verification changes, or the "
                    "pin is taken anew; the stored password is never sent to another endpoint."
                ]
            }
        )
    if sealed_password is not None and not credentials.is_sealed(sealed_password):
        raise InvalidInput({"password": ["Not a sealed password."]})

    pin = connector.identity
    if sealed_password is not None:
        config = ConnectionConfig(
            url=moved.get("url", connector.url),
            username=moved.get("username", connector.username),
            password=credentials.unseal(sealed_password),
            verify_tls=moved.get("verify_tls", connector.verify_tls),
        )
        if repin or "url" in moved or not (pin.instance_uuid or pin.tls_fingerprint):
            # A new endpoint, a new identity accepted, or a connector registered before pinning.
            pin = connector_pin_and_login(kind=connector.kind, config=config)
        else:
            connector_for(connector.kind, _pinned(config, pin)).check_login()

    fields = (*UPDATABLE, *PIN_FIELDS)
    with transaction.atomic():
        locked = Connector.objects.select_for_update().get(pk=connector.pk)
        before = _plain(locked, fields)
        for name, value in moved.items():
            setattr(locked, name, value)
        locked.instance_uuid, locked.tls_fingerprint = pin.instance_uuid, pin.tls_fingerprint
        if sealed_password is not None:
            locked.set_sealed_password(sealed_password)
        locked.full_clean()
        locked.save()
        after = _plain(locked, fields)
        changes = {k: {"from": before[k], "to": v} for k, v in after.items() if before[k] != v}
        if sealed_password is not None:
            record(
                "config.connector.password_changed",
                actor=actor,
                actor_name=actor_name,
                obj=locked,
                details={"name": locked.name},
            )
        if changes:
            record(
                "config.connector.updated",
                actor=actor,
                actor_name=actor_name,
                obj=locked,
                details={"name": locked.name, "changes": changes},
            )
        if "url" in moved or before["instance_uuid"] != after["instance_uuid"]:
            from approvals.inventory import inventory_outdated

            transaction.on_commit(lambda: inventory_outdated(locked.pk))
    for name in (*fields, "password_encrypted", "updated_at"):
        setattr(connector, name, getattr(locked, name))
    return connector


def connector_identity_refused(*, connector: Connector, error: IdentityMismatch, actor_name: str) -> Finding | None:
    """The worker met an endpoint that is not the connector's pinned
    hypervisor and sent it nothing. Keeps one open finding per connector and
    reason (instance UUID or certificate): the first refusal raises it and is
    audited, later ones move its last_seen and are audited again only when
    another identity answers. Returns the finding when it was raised now."""
    now = timezone.now()
    ref = f"identity:{error.what}"
    observed = {"url": error.url, "what": error.what, "seen": error.seen}
    expected = {"what": error.what, "pinned": error.expected}
    details = {"connector": connector.name, **observed, "expected": error.expected, "error": str(error)}
    with transaction.atomic():
        known = (
            Finding.objects.select_for_update()
            .filter(connector=connector, kind=FindingKind.CONNECTOR_IDENTITY, object_ref=ref, acknowledged_at=None)
            .first()
        )
        if known is not None:
            Finding.objects.filter(pk=known.pk).update(last_seen=now, observed=observed)
            if known.observed != observed:
                record("connector.identity_refused", actor_name=actor_name, obj=connector, details=details)
            return None
        try:
            with transaction.atomic():
                finding = Finding.objects.create(
                    connector=connector,
                    kind=FindingKind.CONNECTOR_IDENTITY,
                    object_ref=ref,
                    observed=observed,
                    expected=expected,
                    first_seen=now,
                    last_seen=now,
                )
        except IntegrityError:  # another worker raised it a moment ago
            return None
        record("connector.identity_refused", actor_name=actor_name, obj=connector, details=details)
        record(
            "finding.raised",
            actor_name=actor_name,
            obj=finding,
            details={
                "connector": connector.name,
                "kind": finding.kind,
                "object_ref": ref,
                "observed": observed,
                "expected": expected,
            },
        )
    return finding


def identity_mismatch_in(exc: BaseException) -> IdentityMismatch | None:
    """The IdentityMismatch behind `exc` (itself, or what it was raised
    from), or None: inventory reads wrap connector errors in their own."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, IdentityMismatch):
            return current
        seen.add(id(current))
        current = current.__cause__
    return None
