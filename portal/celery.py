import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _connections_as_django_keeps_them(task=None, **_kwargs) -> None:
    """At a worker task's edges, as Django does at a request's: close the
    connections that are broken or older than CONN_MAX_AGE, keep the rest
    (settings.CELERY_DB_REUSE_MAX turns off Celery's closing of all of them).
    Not for a task run eagerly in its caller's process, whose transaction
    the connection may be holding."""
    if task is None or getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
