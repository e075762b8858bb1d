"""Shapes of users, teams and API tokens in the API."""

from rest_framework import serializers

from accounts.models import ApiToken, Team, User
from config.api import OptionalEmailField


class UserSerializer(serializers.ModelSerializer):
    email = OptionalEmailField(read_only=True)

    class Meta:
        model = User
        fields = ["id", "username", "first_name", "last_name", "email", "role", "team", "is_active"]
        read_only_fields = fields


class MeSerializer(UserSerializer):
    managed_teams = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta(UserSerializer.Meta):
        fields = [*UserSerializer.Meta.fields, "managed_teams"]
        read_only_fields = fields


class TeamSerializer(serializers.ModelSerializer):
    managers = serializers.PrimaryKeyRelatedField(
        many=True, required=False, queryset=User.objects.filter(is_active=True), help_text="Managers or admins."
    )
    members = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Team
        fields = ["id", "name", "managers", "members", "created_at"]
        read_only_fields = ["id", "members", "created_at"]


class ApiTokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at"]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at", "revoked_at"]


class NewApiTokenSerializer(ApiTokenSerializer):
    """A token just created: the only time its secret `token` is shown."""

    token = serializers.CharField(read_only=True, help_text="Send as `Authorization: Bearer <token>`; shown once.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]


class UserSummarySerializer(serializers.ModelSerializer):
    """A user in a few fields: how `?expand=owner` shows a record's owner."""

    class Meta:
        model = User
        fields = ["id", "username", "first_name", "last_name"]
        read_only_fields = fields
