"""Signing checkpoints of the audit chain (notify, every
AUDIT_CHECKPOINT_SECONDS and soon after a ticket's final state). Signing is
never on the append path: `record` only moves the chain head; this reads it
later."""

from __future__ import annotations

import logging
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import signing
from audit.models import AuditEntry, ChainHead, Checkpoint
from audit.verify import verify_chain
from portal.keys import load_key, require_strong

log = logging.getLogger(__name__)


def signing_key() -> str:
    """AUDIT_SIGNING_KEY; for local runs and tests generated into DATA_DIR on
    first use. Only the processes that hold it (the worker, the shell) sign."""
    if not settings.HOLDS_AUDIT_SIGNING_KEY:
        raise ImproperlyConfigured(f"the {settings.SERVICE} process does not hold AUDIT_SIGNING_KEY")
    key = settings.AUDIT_SIGNING_KEY or load_key(
        "AUDIT_SIGNING_KEY", data_dir=settings.DATA_DIR, generate_locally=settings.AUDIT_SIGNING_KEY_LOCAL
    )
    require_strong("AUDIT_SIGNING_KEY", key)
    return key


@lru_cache(maxsize=2)
def _private_key(text: str):
    return signing.private_key(text)


def public_key() -> str:
    """The portal's checkpoint public key: AUDIT_SIGNING_PUBLIC_KEY, else
    derived from AUDIT_SIGNING_KEY where this process holds it; "" if neither."""
    if settings.AUDIT_SIGNING_PUBLIC_KEY:
        return settings.AUDIT_SIGNING_PUBLIC_KEY
    if not settings.HOLDS_AUDIT_SIGNING_KEY:
        return ""
    key = settings.AUDIT_SIGNING_KEY or load_key(
        "AUDIT_SIGNING_KEY", data_dir=settings.DATA_DIR, generate_locally=False
    )
    try:
        return signing.public_key_text(_private_key(key)) if key else ""
    except signing.SigningKeyError:
        return ""


def sign_checkpoint() -> Checkpoint | None:
    """Sign the chain as it stands now, after checking every entry since the
    last checkpoint (HMACs and links) so a tampered tail is never signed.
    Nothing to do when the head has not moved; None then, or when the chain
    does not extend the last checkpoint (logged as an error)."""
    key = _private_key(signing_key())
    head = ChainHead.objects.filter(id=1).values_list("seq", "hash").first()
    if head is None or head[0] == 0:
        return None
    seq, digest = head
    last = Checkpoint.objects.order_by("-seq").values_list("seq", "hash").first()
    if last is not None:
        if last[0] == seq and last[1] == digest:
            return None
        problem = None
        if seq < last[0]:
            problem = f"the chain head (#{seq}) is behind the last checkpoint (#{last[0]})"
        else:
            since = verify_chain(AuditEntry.objects.filter(seq__gte=last[0], seq__lte=seq))
            first = AuditEntry.objects.filter(seq=last[0]).values_list("hash", flat=True).first()
            if not since.ok:
                problem = f"entry #{since.first_broken}: {since.reason}"
            elif first != last[1]:
                problem = f"entry #{last[0]} no longer has the hash its checkpoint signed"
        if problem:
            log.error("audit checkpoint refused: %s; not signing, run manage.py verify_audit", problem)
            return None
    signed_at = timezone.now().isoformat()
    signature = signing.sign(key, signing.checkpoint_message(seq=seq, hash=digest, signed_at=signed_at))
    try:
        with transaction.atomic():
            return Checkpoint.objects.create(
                seq=seq, hash=digest, signed_at=signed_at, public_key=signing.public_key_text(key), signature=signature
            )
    except IntegrityError:  # another worker signed this head at the same moment
        return None


# Set while a checkpoint asked for by a final state waits in the queue.
SOON_KEY = "audit-checkpoint-soon"


def checkpoint_soon() -> None:
    """Ask for a checkpoint AUDIT_CHECKPOINT_SOON_SECONDS from now (a ticket
    reached its final state). Call through transaction.on_commit: the entry
    must be visible. While one such request waits, later ones add nothing:
    the waiting task clears the mark before it reads the chain head
    (sign_requested), so it covers every entry committed before a request
    it absorbed. A lost message leaves the mark for at most
    AUDIT_CHECKPOINT_SECONDS more, and beat signs within that time anyway."""
    from audit.tasks import sign_checkpoint as task

    delay = settings.AUDIT_CHECKPOINT_SOON_SECONDS
    try:
        if not cache.add(SOON_KEY, 1, timeout=delay + settings.AUDIT_CHECKPOINT_SECONDS):
            return
    except Exception:  # no cache: ask anyway, one more checkpoint task is harmless
        log.warning("could not read the checkpoint mark; queueing a checkpoint anyway", exc_info=True)
    try:
        task.apply_async(kwargs={"requested": True}, countdown=delay)
    except Exception:  # the broker being down must not fail a committed transition
        cache.delete(SOON_KEY)
        log.exception("could not queue an audit checkpoint; beat signs one within AUDIT_CHECKPOINT_SECONDS")


def sign_requested() -> Checkpoint | None:
    """The checkpoint checkpoint_soon asked for: the mark is cleared first,
    so a final state committed after the head is read queues a request of
    its own, and one committed before is in what this signs."""
    cache.delete(SOON_KEY)
    return sign_checkpoint()
