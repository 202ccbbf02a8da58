"""Queueing Celery tasks after the transaction that made them necessary
commits. A broker that is down never undoes or blocks the change: the
sweeper re-queues what was not delivered. Tasks are sent by name, so the
services never import the tasks module (which imports them)."""

import logging

from django.db import transaction

from portal.celery import app

logger = logging.getLogger(__name__)


def _send(task_name: str, *args, countdown: float | None = None) -> None:
    try:
        app.send_task(f"approvals.tasks.{task_name}", args=args, countdown=countdown)
    except Exception:  # the broker being down must not fail the request
        logger.warning("could not queue %s%r; the sweeper will retry", task_name, args, exc_info=True)


def enqueue_execution(ticket_id: int, *, countdown: float | None = None) -> None:
    """Queue the ticket's execution (after `countdown` seconds: a ticket
    held by a freeze or a conflict; should that message be lost, the
    sweeper queues the ticket again)."""
    transaction.on_commit(lambda: _send("execute_ticket", ticket_id, countdown=countdown))


def enqueue_revocation(ticket_id: int) -> None:
    transaction.on_commit(lambda: _send("revoke_access", ticket_id))


def enqueue_notification(ticket_id: int, event: str) -> None:
    transaction.on_commit(lambda: _send("send_notification", ticket_id, event))


def enqueue_chat_delivery(hook_id: int, ticket_id: int, event: str) -> None:
    transaction.on_commit(lambda: _send("deliver_chat", hook_id, ticket_id, event))
