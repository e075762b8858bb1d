"""API viewsets of accounts: users and teams (read), the signed-in user, and their personal API tokens."""

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.api import schema  # noqa: F401  (registers the bearer token scheme with drf-spectacular)
from accounts.api import serializers as s
from accounts.models import ApiToken, Team, User
from config.api import AdminWritesOnly, UpdateMixin, VisibleViewSet


class UserViewSet(VisibleViewSet):
    """Users whose records the signed-in user may see (everyone, for an admin)."""

    model = User
    serializer_class = s.UserSerializer
    filterset_fields = ["team", "role", "is_active"]
    search_fields = ["username", "first_name", "last_name", "email"]
    ordering_fields = ["username", "last_name", "id"]

    def visible_queryset(self):
        return selectors.visible_users(self.request.user)


class TeamViewSet(UpdateMixin, VisibleViewSet):
    """Sales teams with their managers and members; everyone signed in sees the organisation chart, admins change it.

    Members join a team through their user's `team` (in the Django admin), not here.
    """

    model = Team
    serializer_class = s.TeamSerializer
    permission_classes = [AdminWritesOnly]
    search_fields = ["name"]
    ordering_fields = ["name", "id"]

    def visible_queryset(self):
        # Only the ids are shown; members also need team_id, by which the prefetch matches them to their team.
        return selectors.visible_teams(self.request.user).prefetch_related(
            Prefetch("managers", queryset=User.objects.only("id")),
            Prefetch("members", queryset=User.objects.only("id", "team")),
        )

    def editable_queryset(self):
        return self.visible_queryset()  # AdminWritesOnly has already let only admins this far

    @extend_schema(responses={201: s.TeamSerializer})
    def create(self, request):
        team = services.create_team(actor=request.user, **self.validated_data())
        return self.detail_response(team, status_code=status.HTTP_201_CREATED)

    def perform_update(self, team, data):
        return services.update_team(team=team, actor=self.request.user, **data)


class MeView(APIView):
    """The signed-in user, with the teams they manage."""

    @extend_schema(responses=s.MeSerializer)
    def get(self, request):
        return Response(s.MeSerializer(request.user).data)


class ApiTokenViewSet(VisibleViewSet):
    """The signed-in user's personal API tokens: list, create (the secret is shown once), revoke."""

    model = ApiToken
    serializer_class = s.ApiTokenSerializer
    ordering_fields = ["created_at", "last_used_at", "id"]

    def visible_queryset(self):
        return selectors.api_tokens_of(self.request.user)

    def editable_queryset(self):
        return selectors.api_tokens_of(self.request.user)

    @extend_schema(request=s.ApiTokenSerializer, responses={201: s.NewApiTokenSerializer})
    def create(self, request):
        token, raw_token = services.create_api_token(user=request.user, **self.validated_data())
        token.token = raw_token
        return Response(s.NewApiTokenSerializer(token).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None}, description="Revoke the token; it stops working at once.")
    def destroy(self, request, pk=None):
        services.revoke_api_token(token=self.get_editable_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
