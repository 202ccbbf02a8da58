"""Thin Celery tasks: primary keys in, services do the work."""

import logging
import os
import socket

from celery import shared_task
from django.conf import settings

from approvals import chat, inventory, notifications
from approvals.services import emergencies, execution, sweeper

logger = logging.getLogger(__name__)


def _worker_name(task) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{task.request.id or 'direct'}"


@shared_task(bind=True)
def execute_ticket(self, ticket_id: int) -> str:
    return execution.ticket_execute(ticket_id=ticket_id, worker=_worker_name(self))


@shared_task(bind=True)
def revoke_access(self, ticket_id: int) -> str:
    return execution.access_expire(ticket_id=ticket_id, actor_name=_worker_name(self))


@shared_task
def sweep() -> dict:
    return sweeper.sweep()


@shared_task
def remind_unreviewed_emergencies() -> int:
    return emergencies.remind_overdue()


# Not acks_late: a request lost with its worker is not worth redelivering,
# the web has stopped waiting for it.
@shared_task(bind=True, ignore_result=True, acks_late=False)
def read_inventory(self, connector_id: int, nonce: str) -> str:
    """Read a connector's inventory into the table for a process without
    CREDENTIALS_KEY (the web); ok or the error answered under `nonce`."""
    return inventory.inventory_answer(connector_id=connector_id, nonce=nonce, actor_name=_worker_name(self))


@shared_task(ignore_result=True)
def send_notification(ticket_id: int, event: str) -> int:
    try:
        chat.fan_out(ticket_id, event)
    except Exception:  # neither does a chat webhook
        logger.warning("chat notifications %s for ticket %s not queued", event, ticket_id, exc_info=True)
    try:
        return notifications.notify(ticket_id, event)
    except Exception:  # a failed send never blocks a ticket
        logger.warning("notification %s for ticket %s not sent", event, ticket_id, exc_info=True)
        return 0


@shared_task(bind=True, ignore_result=True, max_retries=None)
def deliver_chat(self, hook_id: int, ticket_id: int, event: str) -> str:
    """One chat message, tried CHAT_MAX_ATTEMPTS times with backoff; the
    last failure is audited. It only reads the ticket."""
    try:
        return chat.deliver(hook_id=hook_id, ticket_id=ticket_id, event=event)
    except chat.ChatDeliveryFailed as exc:
        attempt = self.request.retries + 1
        if attempt >= settings.CHAT_MAX_ATTEMPTS:
            chat.delivery_failed(hook_id=hook_id, ticket_id=ticket_id, event=event, error=str(exc), attempts=attempt)
            return "failed"
        raise self.retry(exc=exc, countdown=settings.CHAT_RETRY_BASE_SECONDS * 2 ** (attempt - 1)) from None
