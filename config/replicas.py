"""Read replicas (`DATABASE_REPLICA_URLS`): the reads of GET and HEAD requests go to a streaming replica, everything
else to the primary.

- Which reads: those of safe requests (GET, HEAD, OPTIONS) — the dashboard and metric reads, the lists, the exports,
  the pages. A write request reads on the primary too, since it reads what it is about to change (and locks it);
  Celery tasks and commands never leave the primary (no request marks them), so a recompute never computes from a
  lagging copy.
- Pinning, as django-multidb-router's PinningReplicaRouter does: a write request marks its sender, and for
  `REPLICA_PIN_SECONDS` that sender's reads stay on the primary, so one sees one's own write at once. The mark is a
  cookie (for browsers and any client that keeps cookies) and a short Redis key named after the credential (the
  session cookie or the Authorization header: token clients that keep no cookies), both set without a query. When
  Redis cannot say, the read stays on the primary: correct before cheap.
- The sign-in path (sessions, users, API tokens, lockouts, idempotency keys) always reads on the primary: a token or
  a session made a moment ago on the primary must work at once, whoever uses it.
- A replica that fails is skipped: one that cannot be reached, or whose query fails mid-request, is left out for
  `REPLICA_RETRY_SECONDS` by this process, and the GET that met the failure is answered again on the primary (a
  safe request may be run twice), so a replica going away costs no 5xx. A replica further behind than
  `REPLICA_MAX_LAG_SECONDS` (checked at most every `REPLICA_CHECK_SECONDS` per process) is skipped likewise.
- Migrations and writes only ever run on the primary (`allow_migrate`, `db_for_write`).

Without `DATABASE_REPLICA_URLS` there is no replica alias and every query goes to `default`, as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import random
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

logger = logging.getLogger(__name__)

REPLICA_ALIAS_PREFIX = "replica_"
PIN_COOKIE = "crm_primary_pin"
PIN_CACHE_PREFIX = "replica-pin:"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Read on the primary whatever the request: what signing in and request bookkeeping read right after writing it.
PRIMARY_ONLY_APPS = frozenset({"sessions", "axes"})
PRIMARY_ONLY_MODELS = frozenset(
    {"accounts.user", "accounts.apitoken", "accounts.failedtokenattempts", "accounts.idempotentrequest"}
)

# How far behind the primary a replica is, in seconds: 0 when it has replayed all it received (an idle primary sends
# nothing, and the time since the last replayed commit is then no lag at all); NULL on a server that is no replica.
LAG_SQL = """
SELECT CASE
    WHEN NOT pg_is_in_recovery() THEN NULL
    WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
    ELSE GREATEST(0, EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()))
END
"""


# Set by the test session (tests/conftest.py). Under Django's test runner a replica alias is a test mirror of the
# test database (`TEST["MIRROR"]`, so no test database is made on it), read on a second connection that would not see
# a test's uncommitted rows: there its reads go to `default`, the same database. The app processes that tests start
# leave it unset and read from their real replicas.
test_mirrors_read_on_primary = False


def replica_aliases() -> list[str]:
    """The aliases reads may go to (`replica_1`, ...: one per URL of `DATABASE_REPLICA_URLS`)."""
    return [
        alias
        for alias, database in settings.DATABASES.items()
        if alias.startswith(REPLICA_ALIAS_PREFIX)
        and not (test_mirrors_read_on_primary and database.get("TEST", {}).get("MIRROR"))
    ]


@dataclass
class _ReplicaHealth:
    skipped_until: float = 0.0
    checked_at: float = float("-inf")


# Per process, shared by its threads: a stale read of these only means one more check or one more skip.
_health: dict[str, _ReplicaHealth] = {}
_health_lock = threading.Lock()


def _health_of(alias: str) -> _ReplicaHealth:
    with _health_lock:
        return _health.setdefault(alias, _ReplicaHealth())


def skip_replica(alias: str, reason: str) -> None:
    """Leave `alias` out of this process's reads for `REPLICA_RETRY_SECONDS`."""
    _health_of(alias).skipped_until = time.monotonic() + settings.REPLICA_RETRY_SECONDS
    logger.warning("Replica %s skipped for %s s: %s", alias, settings.REPLICA_RETRY_SECONDS, reason)


def replica_lag_seconds(alias: str) -> float | None:
    """The replica's lag behind the primary in seconds (0 when caught up); raises DatabaseError when unreachable."""
    with connections[alias].cursor() as cursor:
        cursor.execute(LAG_SQL)
        lag = cursor.fetchone()[0]
    return None if lag is None else round(float(lag), 3)


def _usable(alias: str) -> bool:
    health = _health_of(alias)
    now = time.monotonic()
    if now < health.skipped_until:
        return False
    if now - health.checked_at < settings.REPLICA_CHECK_SECONDS:
        return True
    health.checked_at = now
    try:
        lag = replica_lag_seconds(alias)
    except DatabaseError as error:
        _close(alias)
        skip_replica(alias, f"{error.__class__.__name__}: {error}".strip())
        return False
    if lag is not None and lag > settings.REPLICA_MAX_LAG_SECONDS:
        skip_replica(alias, f"{lag:.1f} s behind the primary")
        return False
    return True


class _RequestReads:
    """What the current request may read from: `allowed` when it is a safe, unpinned request; `alias` once chosen."""

    def __init__(self, allowed: bool):
        self.allowed = allowed
        self.alias: str | None = None

    def choose(self) -> str:
        if self.alias is None:
            candidates = replica_aliases()
            random.shuffle(candidates)
            self.alias = next((alias for alias in candidates if _usable(alias)), DEFAULT_DB_ALIAS)
        return self.alias


_reads: contextvars.ContextVar[_RequestReads | None] = contextvars.ContextVar("replica_reads", default=None)


class ReplicaRouter:
    """Reads of safe, unpinned requests on a replica (one per request); everything else on the primary."""

    def db_for_read(self, model, **hints) -> str:
        reads = _reads.get()
        if reads is None or not reads.allowed:
            return DEFAULT_DB_ALIAS
        if model._meta.app_label in PRIMARY_ONLY_APPS or model._meta.label_lower in PRIMARY_ONLY_MODELS:
            return DEFAULT_DB_ALIAS
        return reads.choose()

    def db_for_write(self, model, **hints) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        # A replica holds the primary's rows: an object read there may be related to one read here.
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool:
        return db == DEFAULT_DB_ALIAS


def _pin_key_for(credential: str | None) -> str | None:
    if not credential:
        return None
    return PIN_CACHE_PREFIX + hashlib.sha256(credential.encode()).hexdigest()[:32]


def _pin_key(request) -> str | None:
    return _pin_key_for(request.headers.get("Authorization") or request.COOKIES.get(settings.SESSION_COOKIE_NAME))


def _pinned(request) -> bool:
    if PIN_COOKIE in request.COOKIES:
        return True
    key = _pin_key(request)
    if key is None:
        return False
    try:
        return cache.get(key) is not None
    except Exception:  # noqa: BLE001 - Redis away: nothing says the sender has not just written
        return True


def _pin(request, response) -> None:
    seconds = settings.REPLICA_PIN_SECONDS
    response.set_cookie(PIN_COOKIE, "1", max_age=seconds, httponly=True, samesite="Lax")
    # The credential may have changed on the way (a sign-in): mark both the one sent and the one handed out.
    keys = {_pin_key(request)}
    if settings.SESSION_COOKIE_NAME in response.cookies:
        keys.add(_pin_key_for(response.cookies[settings.SESSION_COOKIE_NAME].value))
    try:
        cache.set_many({key: 1 for key in keys if key}, timeout=seconds)
    except Exception:  # the cookie still pins browsers; the write itself succeeded
        logger.warning("Could not record the primary pin in Redis", exc_info=True)


class ReplicaReadsMiddleware:
    """Marks each request for `ReplicaRouter`, pins the sender of a write, and answers again on the primary a safe
    request that a failing replica broke."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not replica_aliases():
            return self.get_response(request)
        if request.method not in SAFE_METHODS:
            token = _reads.set(_RequestReads(allowed=False))
            try:
                response = self.get_response(request)
            finally:
                _reads.reset(token)
            _pin(request, response)
            return response
        reads = _RequestReads(allowed=not _pinned(request))
        token = _reads.set(reads)
        try:
            response = self.get_response(request)
            failed_on = reads.alias if reads.alias not in (None, DEFAULT_DB_ALIAS) else None
            if failed_on and response.status_code >= 500 and connections[failed_on].errors_occurred:
                skip_replica(failed_on, f"a request failed on it ({response.status_code})")
                _close(failed_on)
                reads.alias = DEFAULT_DB_ALIAS
                response = self.get_response(request)
        finally:
            _reads.reset(token)
        if response.streaming and reads.allowed:
            # An export's rows are read while the server sends it, after this returns: on the same replica, checked
            # now, since a stream that has begun cannot be answered again.
            alias = reads.choose()
            if alias != DEFAULT_DB_ALIAS:
                try:
                    connections[alias].close_if_health_check_failed()
                    connections[alias].ensure_connection()
                except DatabaseError as error:
                    _close(alias)
                    skip_replica(alias, f"{error.__class__.__name__}: {error}".strip())
                    reads.alias = DEFAULT_DB_ALIAS
            response.streaming_content = _read_with(
                reads, response.streaming_content, lambda: self.get_response(request)
            )
        return response


def _read_with(reads: _RequestReads, content, answer_again):
    """`content`'s chunks, each produced with the request's choice of database in force.

    When the replica fails mid-stream, the request is answered again on the primary and the stream goes on from
    where it stopped, but only if the primary's answer begins with exactly what was sent (compared by hash): the file
    is then the primary's from the first byte. Otherwise the stream ends broken, as it would without a replica.
    """
    iterator = iter(content)
    sent, count, done = hashlib.sha256(), 0, object()
    while True:
        token = _reads.set(reads)
        try:
            try:
                chunk = next(iterator, done)
            except DatabaseError as error:
                failed = reads.alias
                if failed in (None, DEFAULT_DB_ALIAS):
                    raise
                skip_replica(failed, f"an export failed on it ({error.__class__.__name__})")
                _close(failed)
                reads.alias = DEFAULT_DB_ALIAS
                iterator = _resumed(answer_again(), count, sent.digest(), error)
                chunk = next(iterator, done)
        finally:
            _reads.reset(token)
        if chunk is done:
            return
        sent.update(chunk)
        count += 1
        yield chunk


def _resumed(response, count: int, digest: bytes, error: DatabaseError):
    """The chunks of `response` after its first `count`, which must hash to `digest` (what was sent already)."""
    iterator = iter(response.streaming_content) if response.streaming else iter([response.content])
    try:
        again = hashlib.sha256()
        for _ in range(count):
            again.update(next(iterator, b""))
        if response.status_code != 200 or again.digest() != digest:
            raise error
        yield from iterator
    finally:
        response.close()


def _close(alias: str) -> None:
    # The connection of a replica that went away is broken; closing it may fail the same way, which changes nothing.
    with contextlib.suppress(DatabaseError):
        connections[alias].close()
