"""Settings pages of accounts: every user's own API tokens, and the teams (admins only).

Writes go through `accounts.services`; a token's secret is shown once, in the response that created it, and is
never stored or put in the session.
"""

from datetime import datetime, time

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts import selectors, services
from accounts.decorators import admin_required
from accounts.models import Role, Team, User
from config.forms import add_service_errors


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. “Zapier” or “Reporting script”.")
    expires_on = forms.DateField(
        required=False,
        label="Expires on (optional)",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The token stops working at the end of this day. Leave empty for no expiry.",
    )

    def clean_expires_on(self):
        day = self.cleaned_data["expires_on"]
        if day is not None and day < timezone.localdate():
            raise ValidationError("The expiry must be today or later.")
        return day

    def expires_at(self) -> datetime | None:
        day = self.cleaned_data["expires_on"]
        return None if day is None else timezone.make_aware(datetime.combine(day, time.max))


NEW_TOKEN_SESSION_KEY = "settings.new_api_token"


@login_required
@never_cache
def token_list(request: HttpRequest) -> HttpResponse:
    """The user's tokens; a POST creates one, then redirects here, and this GET shows its secret once.

    The secret waits in the session between the POST and the GET (and is taken out by that GET), so reloading the
    page after creating a token neither creates a second one nor shows the secret again.
    """
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            created, secret = services.create_api_token(
                user=request.user, name=form.cleaned_data["name"], expires_at=form.expires_at()
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            request.session[NEW_TOKEN_SESSION_KEY] = {"id": created.pk, "secret": secret}
            return redirect("settings:tokens")
    created = secret = None
    if request.method == "GET":
        new = request.session.pop(NEW_TOKEN_SESSION_KEY, None)
        if new:
            created = selectors.api_tokens_of(request.user).filter(pk=new["id"]).first()
            secret = new["secret"] if created else None
    status = 400 if request.method == "POST" else 200
    context = {
        "tokens": selectors.api_tokens_of(request.user),
        "form": form,
        "created": created,
        "secret": secret,
        "now": timezone.now(),
        "section": "tokens",
    }
    return render(request, "settings/tokens.html", context, status=status)


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(selectors.api_tokens_of(request.user), pk=pk)
    services.revoke_api_token(token=token)
    messages.success(request, f"Revoked the token {token.name}. It no longer works.")
    return redirect("settings:tokens")


# --- Teams (admins) -------------------------------------------------------------------------------------------------


class TeamForm(forms.Form):
    name = forms.CharField(max_length=100)
    managers = forms.ModelMultipleChoiceField(
        queryset=User.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Managers and admins only. A manager may lead several teams.",
    )
    members = forms.ModelMultipleChoiceField(
        queryset=User.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="A user belongs to one team: adding them here moves them from their current team.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        active = User.objects.filter(is_active=True).order_by("username")
        self.fields["managers"].queryset = active.filter(role__in=[Role.MANAGER, Role.ADMIN])
        self.fields["members"].queryset = active


@admin_required
def team_list(request: HttpRequest) -> HttpResponse:
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                team = services.create_team(
                    actor=request.user, name=form.cleaned_data["name"], managers=list(form.cleaned_data["managers"])
                )
                services.change_team_members(team=team, members=form.cleaned_data["members"], actor=request.user)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Created the team {team}.")
            return redirect("settings:teams")
    teams = Team.objects.prefetch_related("managers", "members")
    status = 400 if request.method == "POST" else 200
    return render(request, "settings/teams.html", {"teams": teams, "form": form, "section": "teams"}, status=status)


@admin_required
def team_edit(request: HttpRequest, pk: int) -> HttpResponse:
    team = get_object_or_404(Team, pk=pk)
    initial = {"name": team.name, "managers": list(team.managers.all()), "members": list(team.members.all())}
    form = TeamForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                services.update_team(
                    team=team,
                    actor=request.user,
                    name=form.cleaned_data["name"],
                    managers=list(form.cleaned_data["managers"]),
                )
                services.change_team_members(team=team, members=form.cleaned_data["members"], actor=request.user)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Saved the team {team}.")
            return redirect("settings:teams")
    status = 400 if request.method == "POST" else 200
    return render(request, "settings/team_edit.html", {"team": team, "form": form, "section": "teams"}, status=status)
