"""Writes to accounts: personal API tokens and teams. Callers fetch the records through `accounts.selectors`."""

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken, Team, User

# A used token's `last_used_at` is refreshed at most this often, so that reads do not each cost a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
TOKEN_PREFIX = re.compile(r"[0-9a-f]{12}")


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


def authenticate_api_token(raw_token: str) -> ApiToken | None:
    """The usable token whose raw string is `raw_token` (with its user), or None; marks it as used."""
    prefix, dot, secret = raw_token.removeprefix("crm_").partition(".")
    if not raw_token.startswith("crm_") or not dot or not secret or not TOKEN_PREFIX.fullmatch(prefix):
        return None
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    now = timezone.now()
    if token is None or not hmac.compare_digest(token.key_hash, hash_token_secret(raw_token)):
        return None
    if not token.is_usable(at=now) or not token.user.is_active:
        return None
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


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
