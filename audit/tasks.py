"""Thin Celery tasks for the audit app."""

from celery import shared_task

from audit import checkpoints, drift


@shared_task
def detect_drift() -> list[dict]:
    return [
        {"connector": r.connector, "raised": len(r.raised), "present": r.present, "error": r.error}
        for r in drift.detect_drift_everywhere()
    ]


@shared_task
def sign_checkpoint(requested: bool = False) -> int | None:
    """Sign a checkpoint of the audit chain (beat's, or one a final state
    `requested`); the seq signed, or None."""
    checkpoint = checkpoints.sign_requested() if requested else checkpoints.sign_checkpoint()
    return checkpoint.seq if checkpoint is not None else None
