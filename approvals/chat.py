"""Chat notifications: Slack, Mattermost and Microsoft Teams incoming
webhooks, one plain JSON POST each (a library that builds the URL from its
own scheme could not post to the webhook URL as the chat service gave it).
A message says what happened and links to the ticket; it carries no way to
decide: approval happens only in the portal, signed in, with whatever
one-time password or passkey the policy asks for.

Delivery is a Celery task of its own per webhook (approvals.tasks.deliver_chat),
retried with backoff; it reads the ticket and never writes it, so a receiver
that is down touches no ticket. A delivery that finally failed is audited.
Error words never carry the URL (it is a secret)."""

from __future__ import annotations

import requests
from django.conf import settings
from django.db.models import Q

from approvals.dispatch import enqueue_chat_delivery
from approvals.models import ChatHook, Ticket
from approvals.notifications import SUBJECTS
from approvals.templatetags.portal import ticket_summary
from audit.writer import record


class ChatDeliveryFailed(Exception):
    """The receiver could not be reached or refused; words without the URL."""


def hooks_for(ticket: Ticket) -> list[int]:
    """The webhooks that hear of `ticket`: its policy's, its zone's, and
    those for every ticket."""
    match = Q(policy__isnull=True, zone__isnull=True)
    if ticket.policy_id is not None:
        match |= Q(policy_id=ticket.policy_id)
    if ticket.connector_id is not None and ticket.zone:
        match |= Q(zone__connector_id=ticket.connector_id, zone__name=ticket.zone)
    return list(ChatHook.objects.filter(match).values_list("pk", flat=True))


def fan_out(ticket_id: int, event: str) -> int:
    """Queue one delivery per webhook that hears of the ticket."""
    ticket = Ticket.objects.get(pk=ticket_id)
    hooks = hooks_for(ticket)
    for hook_id in hooks:
        enqueue_chat_delivery(hook_id, ticket_id, event)
    return len(hooks)


def ticket_link(ticket: Ticket) -> str:
    return f"{settings.PORTAL_URL.rstrip('/')}/tickets/{ticket.pk}/"


def message(ticket: Ticket, event: str) -> dict:
    """What every service's message says, as parts."""
    return {
        "title": SUBJECTS[event].format(ref=ticket.ref),
        "summary": ticket_summary(ticket),
        "zone": ticket.zone or ("—" if ticket.connector_id is None else "untrusted"),
        "link": ticket_link(ticket),
        "note": "Decide in the portal; this message cannot approve anything.",
    }


def payload(service: str, parts: dict) -> dict:
    """The JSON body `service`'s incoming webhook takes."""
    if service == ChatHook.Service.TEAMS:
        # An Adaptive Card, as Teams workflow webhooks take it.
        return {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {
                        "type": "AdaptiveCard",
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "version": "1.4",
                        "body": [
                            {"type": "TextBlock", "text": parts["title"], "weight": "Bolder", "wrap": True},
                            {"type": "TextBlock", "text": parts["summary"], "wrap": True},
                            {"type": "TextBlock", "text": f"Zone: {parts['zone']}", "wrap": True},
                            {"type": "TextBlock", "text": parts["note"], "isSubtle": True, "wrap": True},
                        ],
                        "actions": [{"type": "Action.OpenUrl", "title": "Open the ticket", "url": parts["link"]}],
                    },
                }
            ],
        }
    link = (
        f"<{parts['link']}|{parts['title']}>"
        if service == ChatHook.Service.SLACK
        else f"[{parts['title']}]({parts['link']})"
    )
    return {"text": f"{link}\n{parts['summary']}\nZone: {parts['zone']}\n_{parts['note']}_"}


def deliver(*, hook_id: int, ticket_id: int, event: str) -> str:
    """POST the message for (ticket, event) to one webhook. Worker only (it
    opens the sealed URL). Raises ChatDeliveryFailed."""
    from connectors import credentials

    hook = ChatHook.objects.filter(pk=hook_id).first()
    if hook is None:
        return "webhook gone"
    ticket = Ticket.objects.select_related("connector").get(pk=ticket_id)
    url = credentials.unseal(hook.url_sealed)
    try:
        response = requests.post(
            url,
            json=payload(hook.service, message(ticket, event)),
            timeout=settings.CHAT_TIMEOUT_SECONDS,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        # The exception's text names the URL: only its kind is kept.
        raise ChatDeliveryFailed(f"{hook.url_hint} could not be reached ({type(exc).__name__})") from None
    if not 200 <= response.status_code < 300:
        raise ChatDeliveryFailed(f"{hook.url_hint} answered HTTP {response.status_code}")
    return "delivered"


def delivery_failed(*, hook_id: int, ticket_id: int, event: str, error: str, attempts: int) -> None:
    """Audit a notification that was not delivered after its last try."""
    hook = ChatHook.objects.filter(pk=hook_id).first()
    ticket = Ticket.objects.filter(pk=ticket_id).first()
    record(
        "notification.chat_failed",
        actor_name="worker",
        ticket=ticket,
        obj=hook,
        details={
            "webhook": hook.name if hook else hook_id,
            "service": hook.service if hook else "",
            "ticket": ticket.ref if ticket else ticket_id,
            "event": event,
            "attempts": attempts,
            "error": error,
        },
    )
