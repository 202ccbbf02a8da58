"""Final states ask for a checkpoint soon, at most one waiting at a time:
a drain of many tickets must not queue a signing task per ticket, and none
of them may go unsigned. Real Redis (the cache and the broker's queue) and
real PostgreSQL."""

import json

import pytest
from django.conf import settings
from django.core.cache import cache

from audit.checkpoints import SOON_KEY, checkpoint_soon, sign_requested
from audit.models import Checkpoint
from portal.celery import app

pytestmark = pytest.mark.django_db


def queued() -> int:
    """Messages waiting on the portal queue of the broker."""
    with app.connection_for_write() as connection:
        return connection.default_channel.client.llen(settings.PORTAL_QUEUE)


def test_one_request_waits_for_many_final_states(entries):
    before = queued()
    for _ in range(5):
        checkpoint_soon()
    assert queued() == before + 1
    assert cache.get(SOON_KEY) is not None
    # The waiting task covers every final state it absorbed: they were
    # committed before it clears the mark and reads the head.
    written = entries(3)
    checkpoint = sign_requested()
    assert (checkpoint.seq, checkpoint.hash) == (written[-1].seq, written[-1].hash)
    assert cache.get(SOON_KEY) is None
    # A final state after that asks again.
    checkpoint_soon()
    assert queued() == before + 2
    entries(1)
    assert sign_requested().seq == written[-1].seq + 1
    assert Checkpoint.objects.count() == 2


def test_the_request_is_signed_by_a_task_on_the_portal_queue():
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        before = channel.client.llen(settings.PORTAL_QUEUE)
        checkpoint_soon()
        assert channel.client.llen(settings.PORTAL_QUEUE) == before + 1
        message = json.loads(channel.client.lindex(settings.PORTAL_QUEUE, 0))
    assert message["headers"]["task"] == "audit.tasks.sign_checkpoint"
    assert message["headers"]["eta"] is not None  # after AUDIT_CHECKPOINT_SOON_SECONDS
