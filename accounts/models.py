"""Users, their role, the teams that decide who sees whose records (SPEC §2), and the audit trail of their actions."""

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Role(models.TextChoices):
    REP = "rep", "Sales rep"
    MANAGER = "manager", "Sales manager"
    ADMIN = "admin", "Admin"


class Team(models.Model):
    """A sales team. Members belong to one team (so team metrics add up); managers may lead several teams."""

    name = models.CharField(max_length=100, unique=True)
    managers = models.ManyToManyField("accounts.User", related_name="managed_teams", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.REP)
    team = models.ForeignKey(Team, on_delete=models.SET_NULL, null=True, blank=True, related_name="members")

    class Meta:
        ordering = ["username"]
        constraints = [
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="user_role_valid"),
        ]

    def __str__(self) -> str:
        return self.name_of(self.first_name, self.last_name, self.username)

    @staticmethod
    def name_of(first_name: str, last_name: str, username: str) -> str:
        """What a user is called on every page: the full name (as `get_full_name`), else the username. Also for lists
        read as plain rows, without an instance a user."""
        return f"{first_name} {last_name}".strip() or username

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN or self.is_superuser

    @property
    def is_manager(self) -> bool:
        return self.role == Role.MANAGER


class ApiToken(models.Model):
    """A personal API token (`Authorization: Bearer <prefix>.<secret>`), stored as a SHA-256 hash.

    The secret is shown once, when the token is created (`accounts.services.create_api_token`); the prefix, kept in
    clear, finds the row without scanning every hash. A revoked or expired token authenticates nobody.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_usable(self, *, at) -> bool:
        """Neither revoked nor expired at `at`."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > at)


class FailedTokenAttempts(models.Model):
    """Failed `Authorization: Bearer` attempts from one client address, and until when that address is refused.

    Kept in PostgreSQL, like django-axes' login attempts, so that the protection holds while Redis is away.
    Written by `accounts.services.record_failed_token_attempt`; an admin unlocks an address by deleting its row.
    """

    address = models.GenericIPAddressField(unique=True)
    failures = models.PositiveIntegerField(default=0)
    last_failed_at = models.DateTimeField(db_index=True)
    refused_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "failed token attempts"

    def __str__(self) -> str:
        return f"{self.address}: {self.failures} failed token attempts"


class AuditAction(models.TextChoices):
    CREATED = "created", "Created"
    UPDATED = "updated", "Updated"
    STAGE_CHANGED = "stage_changed", "Stage changed"
    STATUS_CHANGED = "status_changed", "Status changed"
    CONVERTED = "converted", "Converted"
    DELETED = "deleted", "Deleted"


class AuditEntry(models.Model):
    """Who changed what and when, for users' teams, deals, leads, organizations, contacts, pipelines, stages, quotas.

    Append-only (a trigger refuses UPDATE and DELETE), and without a foreign key to the record, so the trail
    outlives what it describes. `changes` maps each field name to [old, new] (foreign keys as ids).
    """

    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    content_type = models.ForeignKey("contenttypes.ContentType", on_delete=models.PROTECT, related_name="+")
    object_id = models.BigIntegerField()
    object_repr = models.CharField(max_length=200)
    changes = models.JSONField(default=dict, encoder=DjangoJSONEncoder)

    class Meta:
        # Born in pipeline (migration 0003, with its append-only trigger in 0004); moved here in state only, so that
        # every app can audit through `accounts.services.record_audit`. The table, its trigger and its rows stay.
        db_table = "pipeline_auditentry"
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["content_type", "object_id", "at"], name="audit_object_time_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(action__in=AuditAction.values), name="audit_action_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor or 'system'} {self.action} {self.object_repr}"


class IdempotentRequest(models.Model):
    """An API write sent with an `Idempotency-Key` (SPEC §4): claimed while it runs, then its answer, kept for
    `IDEMPOTENCY_KEY_HOURS` so that a retry with the same key and body gets the same answer instead of a second
    write (`accounts.idempotency`)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="idempotent_requests")
    key = models.CharField(max_length=255)
    # SHA-256 of the method, path, query string and body: the same key with another request is refused.
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    body = models.BinaryField(default=b"", blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotent_request_key_per_user"),
            # Claimed (running) or answered, never half of each.
            models.CheckConstraint(
                condition=Q(completed_at__isnull=True, status_code__isnull=True)
                | Q(completed_at__isnull=False, status_code__isnull=False),
                name="idempotent_request_answered_whole",
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotent_request_age_idx")]

    def __str__(self) -> str:
        return f"{self.key} ({self.user_id})"
