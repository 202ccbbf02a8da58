"""Thin Celery tasks for the audit app."""

from celery import shared_task

from audit import drift


@shared_task
def detect_drift() -> list[dict]:
    return [
        {"connector": r.connector, "raised": len(r.raised), "present": r.present, "error": r.error}
        for r in drift.detect_drift_everywhere()
    ]
