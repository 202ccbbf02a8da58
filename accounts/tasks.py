"""Thin Celery tasks for accounts."""

from celery import shared_task


@shared_task
def sync_directory() -> dict:
    from accounts.directory.sync import directory_sync

    return directory_sync(actor_name="directory-sync")
