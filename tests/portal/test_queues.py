"""Which queue each task goes to: hypervisor work to the execution queue
(the worker, which holds CREDENTIALS_KEY), the portal's own work to the
portal queue (notify, which does not). Celery's own router decides, as
for every task the services send by name."""

from django.conf import settings

from portal.celery import app

PORTAL = {
    "approvals.tasks.send_notification",
    "approvals.tasks.deliver_chat",
    "approvals.tasks.remind_unreviewed_emergencies",
    "audit.tasks.sign_checkpoint",
    "accounts.tasks.sync_directory",
}
EXECUTION = {
    "approvals.tasks.execute_ticket",
    "approvals.tasks.revoke_access",
    "approvals.tasks.read_inventory",
    "approvals.tasks.sweep",  # takes back expired leases by asking the hypervisor
    "audit.tasks.detect_drift",
}


def queue_of(name: str) -> str:
    return app.amqp.router.route({}, name)["queue"].name


def test_every_task_has_its_queue():
    app.loader.import_default_modules()
    ours = {name for name in app.tasks if name.split(".")[0] in ("approvals", "audit", "accounts")}
    assert ours == PORTAL | EXECUTION  # a new task is placed here on purpose
    assert {queue_of(name) for name in PORTAL} == {settings.PORTAL_QUEUE}
    assert {queue_of(name) for name in EXECUTION} == {settings.EXECUTION_QUEUE} == {"celery"}


def test_beat_sends_each_scheduled_task_to_its_queue():
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {queue_of(name) for name in scheduled & PORTAL} == {settings.PORTAL_QUEUE}
    assert queue_of("audit.tasks.sign_checkpoint") == settings.PORTAL_QUEUE
    assert queue_of("approvals.tasks.sweep") == settings.EXECUTION_QUEUE
