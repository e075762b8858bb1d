"""Writes to accounts: the audit trail every app writes to, personal API tokens (and the count of failed attempts
to use one), teams and their members.

Callers fetch the records through `accounts.selectors`.
"""

import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q, Subquery
from django.utils import timezone

from accounts import signals
from accounts.exceptions import TokenAttemptsRefused
from accounts.models import ApiToken, AuditAction, AuditEntry, FailedTokenAttempts, IdempotentRequest, Team, User

# A used token's `last_used_at` is refreshed at most this often, so that reads do not each cost a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
TOKEN_PREFIX = re.compile(r"[0-9a-f]{12}")


# --- The audit trail (every app's services write it, inside their own transaction) -----------------------------------

# Bookkeeping that changes with every write and says nothing about who changed what.
# last_touched_at and search_text: written by the database (pipeline.touches, pipeline.search_text), not changes
# anyone made.
_NOT_AUDITED = frozenset({"id", "updated_at", "version", "last_touched_at", "search_text"})


def audited_values(instance: models.Model) -> dict[str, Any]:
    """The instance's field values by field name, foreign keys as ids: the 'before' of an audit entry."""
    values = {}
    for field in instance._meta.concrete_fields:
        if field.name in _NOT_AUDITED:
            continue
        value = getattr(instance, field.attname)
        if isinstance(field, models.DecimalField) and isinstance(value, Decimal):
            # As stored: 100 and 100.00 are one amount, and the trail should not show a change between them.
            value = value.quantize(Decimal(1).scaleb(-field.decimal_places))
        values[field.name] = value
    return values


def record_audit(
    *, actor: User | None, instance: models.Model, action: str, before: dict[str, Any] | None = None
) -> AuditEntry | None:
    """Append who changed `instance` and how to the audit trail; `before` is `audited_values` taken earlier.

    Without `before` (a creation) every filled field is recorded as [None, value], for a deletion as [value, None];
    otherwise only the fields that differ, and no entry for an update that changed nothing. Called inside the
    writer's transaction, so the trail commits (or rolls back) with the write.
    """
    after = audited_values(instance)
    if action == AuditAction.DELETED:
        changes = {name: [value, None] for name, value in after.items() if value not in (None, "", [])}
    elif before is None:
        changes = {name: [None, value] for name, value in after.items() if value not in (None, "", [])}
    else:
        changes = {name: [before.get(name), value] for name, value in after.items() if before.get(name) != value}
        if not changes and action == AuditAction.UPDATED:
            return None
    entry = AuditEntry(
        actor=actor,
        action=action,
        content_type=ContentType.objects.get_for_model(instance),
        object_id=instance.pk,
        object_repr=str(instance)[:200],
        changes=changes,
    )
    deferred = _deferred_audit.get()
    if deferred is not None:
        deferred.append(entry)
        return entry
    entry.save(force_insert=True)
    return entry


# The entries `record_audit` was given inside `deferring_audit()`, to be inserted in one statement; None outside.
_deferred_audit: ContextVar[list[AuditEntry] | None] = ContextVar("deferred_audit", default=None)


@contextmanager
def deferring_audit() -> Iterator[list[AuditEntry]]:
    """Inside a transaction: the audit entries recorded in the block are inserted together at its end (one INSERT
    for a batch of 200 writes, not 200), still inside the transaction, so they commit or roll back with the writes.

    Yields the pending entries, in order: a caller whose write failed after its entry was recorded (in a savepoint
    it rolls back) removes the entries of that write from the list. An exception out of the block inserts nothing.
    """
    pending: list[AuditEntry] = []
    token = _deferred_audit.set(pending)
    try:
        yield pending
    finally:
        _deferred_audit.reset(token)
    AuditEntry.objects.bulk_create(pending)


# --- API tokens -----------------------------------------------------------------------------------------------------


def hash_token_secret(raw_token: str) -> str:
    """The stored form of a token: the hex SHA-256 of the whole `<prefix>.<secret>` string."""
    return hashlib.sha256(raw_token.encode()).hexdigest()


@transaction.atomic
def create_api_token(*, user: User, name: str, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """Create a token for `user`; return it with the raw `<prefix>.<secret>` string, which is never stored."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the token a name, so that you can tell your tokens apart."})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    prefix = secrets.token_hex(6)
    raw_token = f"crm_{prefix}.{secrets.token_urlsafe(32)}"
    token = ApiToken(user=user, name=name, prefix=prefix, key_hash=hash_token_secret(raw_token), expires_at=expires_at)
    token.full_clean(exclude=["user"])
    token.save()
    return token, raw_token


def revoke_api_token(*, token: ApiToken) -> ApiToken:
    """Revoke `token` from now on; revoking a revoked token keeps its first revocation time."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def authenticate_api_token(raw_token: str, *, address: str | None = None) -> ApiToken | None:
    """The usable token whose raw string is `raw_token` (with its user), or None; marks it as used.

    With the client's `address`, a failure is counted against it (`record_failed_token_attempt`), and while the
    address must wait, every attempt raises `TokenAttemptsRefused`, right token or not, so that a guess made
    meanwhile tells nothing.
    """
    now = timezone.now()
    prefix, dot, secret = raw_token.removeprefix("crm_").partition(".")
    token = None
    if raw_token.startswith("crm_") and dot and secret and TOKEN_PREFIX.fullmatch(prefix):
        tokens = ApiToken.objects.select_related("user").filter(prefix=prefix)
        if address is not None:
            # In the token's query, so that the usual request (a good token) still costs one query.
            attempts = FailedTokenAttempts.objects.filter(address=address)
            tokens = tokens.annotate(
                address_refused_until=Subquery(attempts.values("refused_until")[:1]),
                address_failures=Subquery(attempts.values("failures")[:1]),
            )
        token = tokens.first()
        if token is not None and address is not None:
            _refuse_if_waiting(refused_until=token.address_refused_until, failures=token.address_failures, now=now)
    if (
        token is None
        or not hmac.compare_digest(token.key_hash, hash_token_secret(raw_token))
        or not token.is_usable(at=now)
        or not token.user.is_active
    ):
        if address is not None:
            record_failed_token_attempt(address=address)
        return None
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def _refuse_if_waiting(*, refused_until: datetime | None, failures: int | None, now: datetime) -> None:
    if refused_until is not None and refused_until > now:
        raise TokenAttemptsRefused(
            retry_after=math.ceil((refused_until - now).total_seconds()),
            locked=(failures or 0) >= settings.API_TOKEN_FAILURE_LIMIT,
        )


def _wait_after(failures: int) -> int:
    """Seconds an address waits after its `failures`-th failure in a row: none, then the delay doubling (1 s, 2 s,
    4 s, ... by default), then the lockout."""
    lockout = settings.API_TOKEN_LOCKOUT_SECONDS
    if failures >= settings.API_TOKEN_FAILURE_LIMIT:
        return lockout
    over = failures - settings.API_TOKEN_FAILURES_BEFORE_DELAY
    return 0 if over <= 0 else min(settings.API_TOKEN_DELAY_SECONDS * 2 ** (over - 1), lockout)


def record_failed_token_attempt(*, address: str) -> FailedTokenAttempts:
    """Count a failed token attempt from `address` and set how long the address must wait before its next one.

    The first `API_TOKEN_FAILURES_BEFORE_DELAY` failures are free; each further one doubles the wait (from
    `API_TOKEN_DELAY_SECONDS`: 1 s, 2 s, 4 s, ...); the `API_TOKEN_FAILURE_LIMIT`-th locks the address for
    `API_TOKEN_LOCKOUT_SECONDS`. Failures are forgotten once none came for that long. An attempt made while the
    address must wait is not counted: it raises `TokenAttemptsRefused`.
    """
    now = timezone.now()
    forget_before = now - timedelta(seconds=settings.API_TOKEN_LOCKOUT_SECONDS)
    with transaction.atomic():
        # The row lock serialises concurrent failures from one address, so that none is lost from the count.
        attempts, _created = FailedTokenAttempts.objects.select_for_update().get_or_create(
            address=address, defaults={"last_failed_at": now}
        )
        _refuse_if_waiting(refused_until=attempts.refused_until, failures=attempts.failures, now=now)
        if attempts.last_failed_at < forget_before:
            attempts.failures = 0
        attempts.failures += 1
        attempts.last_failed_at = now
        wait = _wait_after(attempts.failures)
        attempts.refused_until = now + timedelta(seconds=wait) if wait else None
        attempts.save()
        FailedTokenAttempts.objects.filter(last_failed_at__lt=forget_before).delete()
    return attempts


# --- Teams (admins only; callers check the role) --------------------------------------------------------------------


def _validate_managers(managers: list[User]) -> None:
    not_managers = [str(user) for user in managers if not (user.is_manager or user.is_admin)]
    if not_managers:
        raise ValidationError({"managers": f"Only managers and admins can manage a team: {', '.join(not_managers)}."})


@transaction.atomic
def create_team(*, actor: User | None, name: str, managers: list[User] = ()) -> Team:
    """Create a team led by `managers`; members join it through their user's `team`."""
    _validate_managers(list(managers))
    team = Team(name=name)
    team.full_clean(exclude=["managers"])
    team.save()
    team.managers.set(managers)
    return team


@transaction.atomic
def update_team(*, team: Team, actor: User | None, name: str | None = None, managers: list[User] | None = None) -> Team:
    """Rename a team and/or replace its managers."""
    if name is not None and name != team.name:
        team.name = name
        team.full_clean(exclude=["managers"])
        team.save(update_fields=["name"])
    if managers is not None:
        _validate_managers(managers)
        team.managers.set(managers)
    return team


def _move_users(*, actor: User | None, moves: list[tuple[User, Team | None]]) -> list[User]:
    """Give each user its new team, audit each move as the user's team [before, after], and signal them once
    committed; the users who already were in their new team are left alone. Returns the users that moved."""
    moved, teams = [], set()
    for user, team in moves:
        if user.team_id == (team.pk if team else None):
            continue
        before = audited_values(user)
        teams.update(team_id for team_id in (user.team_id, team.pk if team else None) if team_id is not None)
        user.team = team
        user.save(update_fields=["team"])
        record_audit(actor=actor, instance=user, action=AuditAction.UPDATED, before=before)
        moved.append(user)
    if moved:
        transaction.on_commit(
            lambda: signals.team_membership_changed.send(
                sender=User, actor=actor, users=moved, teams=Team.objects.filter(pk__in=teams)
            )
        )
    return moved


@transaction.atomic
def change_team_members(*, team: Team, members: Iterable[User], actor: User | None) -> list[User]:
    """Make `members` exactly the members of `team`: the others leave it (no team), newcomers leave their own.

    Each user whose team changed gets an audit entry (their team before and after), and once committed
    `accounts.signals.team_membership_changed` is sent (team metrics depend on who is in a team). Returns the users
    whose team changed.
    """
    member_ids = {user.pk for user in members}
    # Locked, so that two concurrent edits of one team do not each leave a user where the other did not expect.
    affected = User.objects.select_for_update().filter(Q(team=team) | Q(pk__in=member_ids)).order_by("pk")
    return _move_users(actor=actor, moves=[(user, team if user.pk in member_ids else None) for user in affected])


@transaction.atomic
def change_user_team(*, user: User, team: Team | None, actor: User | None) -> User:
    """Move `user` to `team` (None: no team), audited and signalled like `change_team_members`."""
    locked = User.objects.select_for_update().get(pk=user.pk)
    _move_users(actor=actor, moves=[(locked, team)])
    user.team = team
    return user


# --- Idempotent API writes (SPEC §4) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdempotencyClaim:
    """What an `Idempotency-Key` allows: run the request (`claimed`), answer as the first time (`replay`), or refuse
    it (`mismatch`: the key was used with another request; `in_flight`: the first request is still running)."""

    outcome: Literal["claimed", "replay", "mismatch", "in_flight"]
    record: IdempotentRequest


def claim_idempotency_key(*, user: User, key: str, fingerprint: str) -> IdempotencyClaim:
    """Claim `key` for `user`'s request with this `fingerprint`, or say why not.

    The claim is committed at once, so that a concurrent request with the same key finds it. A key older than
    `IDEMPOTENCY_KEY_HOURS`, or claimed by a request that never answered within `IDEMPOTENCY_ABANDONED_SECONDS`
    (its process died), is claimed afresh.
    """
    now = timezone.now()
    with transaction.atomic():
        record, created = IdempotentRequest.objects.select_for_update().get_or_create(
            user=user, key=key, defaults={"fingerprint": fingerprint, "created_at": now}
        )
        if created:
            return IdempotencyClaim("claimed", record)
        expired = record.created_at < now - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
        abandoned = record.completed_at is None and record.created_at < now - timedelta(
            seconds=settings.IDEMPOTENCY_ABANDONED_SECONDS
        )
        if expired or abandoned:
            record.fingerprint, record.created_at = fingerprint, now
            record.completed_at = record.status_code = None
            record.headers, record.body = {}, b""
            record.save()
            return IdempotencyClaim("claimed", record)
    if record.fingerprint != fingerprint:
        return IdempotencyClaim("mismatch", record)
    if record.completed_at is None:
        return IdempotencyClaim("in_flight", record)
    return IdempotencyClaim("replay", record)


def record_idempotent_answer(*, record: IdempotentRequest, status_code: int, headers: dict, body: bytes) -> None:
    """Keep the answer of a claimed request, to be replayed to its retries."""
    IdempotentRequest.objects.filter(pk=record.pk).update(
        completed_at=timezone.now(), status_code=status_code, headers=headers, body=body
    )


def release_idempotency_key(*, record: IdempotentRequest) -> None:
    """Give a claimed key back unanswered (the request failed in a way a retry may not: a 5xx, a 409, a 429), so that
    the next request with it runs."""
    IdempotentRequest.objects.filter(pk=record.pk, completed_at__isnull=True).delete()


def prune_idempotency_keys(*, now: datetime | None = None) -> int:
    """Forget the keys older than `IDEMPOTENCY_KEY_HOURS`; how many were forgotten."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
    deleted, _ = IdempotentRequest.objects.filter(created_at__lt=cutoff).delete()
    return deleted
