from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts.models import ApiToken, AuditEntry, FailedTokenAttempts, Team, User
from accounts.services import change_user_team, revoke_api_token


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "get_full_name", "email", "role", "team", "is_active"]
    list_filter = ["role", "team", "is_active", "is_staff"]
    list_select_related = ["team"]
    fieldsets = [
        *DjangoUserAdmin.fieldsets,
        ("Sales organisation", {"fields": ["role", "team"]}),
    ]
    add_fieldsets = [
        *DjangoUserAdmin.add_fieldsets,
        ("Sales organisation", {"fields": ["email", "first_name", "last_name", "role", "team"]}),
    ]

    def save_model(self, request, obj, form, change) -> None:
        """Save the user as Django's admin does, except its team: that goes through `change_user_team` (audited,
        and team metrics recomputed), after the user is saved with its previous team (none for a new user)."""
        team_changed = "team" in form.changed_data
        team = obj.team
        if team_changed:
            obj.team_id = form.initial.get("team") if change else None
        super().save_model(request, obj, form, change)
        if team_changed:
            change_user_team(user=obj, team=team, actor=request.user)


class MemberInline(admin.TabularInline):
    model = User
    fields = ["username", "first_name", "last_name", "role", "is_active"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name = "member"

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # members join a team from their user page, where the password is set


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "manager_names", "member_count"]
    search_fields = ["name"]
    filter_horizontal = ["managers"]
    inlines = [MemberInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("managers", "members")

    @admin.display(description="Managers")
    def manager_names(self, team: Team) -> str:
        return ", ".join(str(manager) for manager in team.managers.all())

    @admin.display(description="Members")
    def member_count(self, team: Team) -> int:
        return len(team.members.all())


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens can be seen and revoked here, never created: the secret must reach its owner, and only them."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["revoked_at"]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    fields = list_display
    readonly_fields = list_display
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset) -> None:
        for token in queryset:
            revoke_api_token(token=token)


@admin.register(FailedTokenAttempts)
class FailedTokenAttemptsAdmin(admin.ModelAdmin):
    """Addresses throttled for failed API token attempts; deleting one unlocks it at once."""

    list_display = ["address", "failures", "last_failed_at", "refused_until"]
    search_fields = ["address"]
    ordering = ["-last_failed_at"]
    readonly_fields = list_display

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: the trail is append-only (a database trigger refuses UPDATE and DELETE)."""

    list_display = ["at", "actor", "action", "content_type", "object_repr"]
    list_filter = ["action", "content_type"]
    list_select_related = ["actor", "content_type"]
    search_fields = ["object_repr"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
