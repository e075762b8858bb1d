"""Celery tasks of the accounts app: thin callers of `accounts.services`."""

from celery import shared_task

from accounts.services import prune_idempotency_keys


@shared_task(name="accounts.prune_idempotency_keys", ignore_result=True)
def prune_old_idempotency_keys() -> int:
    """Forget the answers of idempotent API writes older than `IDEMPOTENCY_KEY_HOURS`."""
    return prune_idempotency_keys()
