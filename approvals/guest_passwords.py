"""Administrator passwords of new VMs: made and sealed by the worker before
the clone, revealed once to the requester on the ticket page, then destroyed.
They never enter the API, a log line, a notification or the audit log; the
audit log records only that one was issued and revealed.

At rest: the worker makes a fresh password for every clone and seals it (libsodium
sealed box) to GUEST_PASSWORD_PUBLIC_KEY. Only the web, which shows it once
to the requester, and the server shell hold GUEST_PASSWORD_KEY to open it:
neither the database nor the worker that made it can read it back."""

from __future__ import annotations

import base64
import binascii
import secrets
import string

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from approvals.choices import TicketState
from approvals.errors import StateConflict
from approvals.models import GuestPassword, Ticket
from audit.writer import record

LENGTH = 20
# No quotes, spaces or backslashes: the password passes through a guest
# customization script (connectors.vsphere_customization).
SYMBOLS = "-_.+=@%^"
ALPHABET = string.ascii_letters + string.digits + SYMBOLS


class GuestPasswordKeyMissing(Exception):
    """This process holds no key for the operation."""


class GuestPasswordUnreadable(Exception):
    """The sealed password does not open with this key, or was altered."""


def generate() -> str:
    """A random password that meets Windows' complexity rules: upper and
    lower case letters, a digit and a symbol."""
    while True:
        password = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        if (
            any(c.islower() for c in password)
            and any(c.isupper() for c in password)
            and any(c.isdigit() for c in password)
            and any(c in SYMBOLS for c in password)
        ):
            return password


def _key(value: str, name: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(value.encode())
    except (binascii.Error, ValueError) as exc:
        raise GuestPasswordKeyMissing(f"{name} is not url-safe base64") from exc
    if len(raw) != 32:
        raise GuestPasswordKeyMissing(f"{name} must encode exactly 32 bytes")
    return raw


def seal(password: str) -> str:
    public = getattr(settings, "GUEST_PASSWORD_PUBLIC_KEY", "")
    if not public:
        raise GuestPasswordKeyMissing(
            "GUEST_PASSWORD_PUBLIC_KEY is not set: the worker cannot keep new VMs' passwords, so it creates none"
        )
    box = SealedBox(PublicKey(_key(public, "GUEST_PASSWORD_PUBLIC_KEY")))
    return base64.urlsafe_b64encode(box.encrypt(password.encode())).decode()


def unseal(sealed: str) -> str:
    private = getattr(settings, "GUEST_PASSWORD_KEY", "")
    if not private:
        raise GuestPasswordKeyMissing("this process holds no GUEST_PASSWORD_KEY: only the web reveals passwords")
    try:
        body = base64.urlsafe_b64decode(sealed.encode())
        return SealedBox(PrivateKey(_key(private, "GUEST_PASSWORD_KEY"))).decrypt(body).decode()
    except (binascii.Error, ValueError, CryptoError, UnicodeDecodeError) as exc:
        raise GuestPasswordUnreadable("the stored password does not open with GUEST_PASSWORD_KEY") from exc


def guest_password_issue(*, ticket: Ticket, actor_name: str) -> str:
    """A fresh password for the VM this ticket creates, stored sealed (and
    committed) before the hypervisor is called. An earlier attempt's password
    is replaced: the worker calls the hypervisor at most once per ticket, so
    that one was never applied."""
    password = generate()
    with transaction.atomic():
        GuestPassword.objects.update_or_create(ticket=ticket, defaults={"sealed": seal(password), "revealed_at": None})
        record("guest_password.issued", actor_name=actor_name, ticket=ticket, obj=ticket, details={})
    return password


def guest_password_discard(*, ticket: Ticket, actor_name: str, reason: str) -> None:
    """The password was not applied (the VM already existed): destroy it."""
    with transaction.atomic():
        if GuestPassword.objects.filter(ticket=ticket).exclude(sealed="").update(sealed=""):
            record(
                "guest_password.discarded", actor_name=actor_name, ticket=ticket, obj=ticket, details={"reason": reason}
            )


def guest_password_state(ticket: Ticket) -> str | None:
    """None (no password), "waiting" (not revealed yet) or "revealed"."""
    row = GuestPassword.objects.filter(ticket=ticket).only("sealed", "revealed_at").first()
    if row is None:
        return None
    if row.sealed and ticket.state == TicketState.SUCCEEDED:
        return "waiting"
    return "revealed" if row.revealed_at else None


def guest_password_reveal(*, ticket_id: int, user) -> str:
    """The password, once, to the ticket's requester; the stored copy is
    destroyed in the same transaction and the reveal audited. A second
    reveal is a StateConflict saying it is gone."""
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket_id)
        if ticket.requester_id != user.pk:
            raise PermissionDenied("Only the requester may see the new VM's password.")
        row = GuestPassword.objects.select_for_update().filter(ticket=ticket).first()
        if row is None or ticket.state != TicketState.SUCCEEDED:
            raise StateConflict("This ticket has no password to reveal.")
        if not row.sealed:
            when = f" on {row.revealed_at:%Y-%m-%d %H:%M} UTC" if row.revealed_at else ""
            raise StateConflict(f"The password was shown once{when} and is gone; it cannot be shown again.")
        password = unseal(row.sealed)
        row.sealed, row.revealed_at, row.revealed_by = "", timezone.now(), user
        row.save(update_fields=["sealed", "revealed_at", "revealed_by"])
        record("guest_password.revealed", actor=user, ticket=ticket, obj=ticket, details={})
    return password
