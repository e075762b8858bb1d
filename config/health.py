"""`/healthz`: is this process able to serve? Used by load balancers and docker-compose healthchecks."""

from datetime import datetime

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.celery import HEARTBEAT_CACHE_KEY
from config.replicas import replica_aliases, replica_lag_seconds


@never_cache
@require_GET
def healthz(request):
    """200 when the database answers; the broker and the last worker heartbeat are reported, not required.

    Redis being away must not take the web tier out of the load balancer (SPEC §7: browsing and writing keep
    working), so only the database decides the status code. With `DATABASE_REPLICA_URLS`, each replica's lag behind
    the primary in seconds (`now() - pg_last_xact_replay_timestamp()` while it has WAL left to replay, else 0).
    """
    checks: dict[str, object] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure means "not healthy", and we say which
        checks["database"] = f"error: {error.__class__.__name__}"
    try:
        last_beat = cache.get(HEARTBEAT_CACHE_KEY)
        checks["broker"] = "ok"
        checks["worker_last_seen_seconds"] = (
            round((timezone.now() - datetime.fromisoformat(last_beat)).total_seconds(), 1) if last_beat else None
        )
    except Exception as error:  # noqa: BLE001
        checks["broker"] = f"error: {error.__class__.__name__}"
    # Reported, not required: a replica that is down or behind is skipped for the primary by the reads themselves.
    replicas = {}
    for alias in replica_aliases():
        try:
            replicas[alias] = {"lag_seconds": replica_lag_seconds(alias)}
        except Exception as error:  # noqa: BLE001
            replicas[alias] = {"error": error.__class__.__name__}
    if replicas:
        checks["replicas"] = replicas
    status = 200 if checks["database"] == "ok" else 503
    return JsonResponse({"status": "ok" if status == 200 else "unavailable", **checks}, status=status)
