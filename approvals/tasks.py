"""Thin Celery tasks: primary keys in, services do the work."""

import logging
import os
import socket

from celery import shared_task

from approvals import notifications
from approvals.services import execution, sweeper

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
def refresh_inventories() -> int:
    from approvals.errors import InventoryUnavailable
    from approvals.inventory import fetch_inventory
    from connectors.models import Connector

    refreshed = 0
    for connector in Connector.objects.all():
        try:
            fetch_inventory(connector)
            refreshed += 1
        except InventoryUnavailable as exc:
            logger.warning("%s", exc)
    return refreshed


@shared_task(ignore_result=True)
def send_notification(ticket_id: int, event: str) -> int:
    try:
        return notifications.notify(ticket_id, event)
    except Exception:  # a failed send never blocks a ticket
        logger.warning("notification %s for ticket %s not sent", event, ticket_id, exc_info=True)
        return 0
