"""The Quotas settings page (/settings/quotas/): admins set any user's or team's quota, managers those of the
teams they manage and of their members (never their own), as `forecasting.selectors.editable_quotas` decides. And
the Metrics settings page (/settings/metrics/, admins): the learned probabilities' lookback window and prior strength.

Thin views like the other settings pages: they list through the selectors and write through
`forecasting.services` (create_quota, update_quota, delete_quota), whose per-field errors land on the form.
Anyone else gets 403; a quota the user may not change is a 404, as if it did not exist.
"""

from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.decorators import admin_required
from config.forms import add_service_errors
from forecasting import selectors, services
from forecasting.models import LOOKBACK_DAYS_MAX, PRIOR_STRENGTH_MAX, Quota
from forecasting.periods import Period, PeriodError


def quota_editor_required(view):
    """Logged-in admins and managers only; anyone else gets 403."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not (request.user.is_admin or request.user.is_manager):
            raise PermissionDenied("Only admins and managers can set quotas.")
        return view(request, *args, **kwargs)

    return wrapper


class QuotaForm(forms.Form):
    user = forms.ModelChoiceField(queryset=None, required=False, help_text="A person's quota…")
    team = forms.ModelChoiceField(queryset=None, required=False, help_text="…or a team's (give exactly one).")
    period_start = forms.DateField(label="First day", widget=forms.DateInput(attrs={"type": "date"}))
    period_end = forms.DateField(
        label="Day after the last",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Exclusive: a Q3 2026 quota runs from 2026-07-01 to 2026-10-01.",
    )
    amount = forms.DecimalField(max_digits=14, decimal_places=2, min_value=0)

    def __init__(self, *args, editor, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = selectors.quota_users_assignable_by(user=editor).order_by("username")
        self.fields["team"].queryset = selectors.quota_teams_assignable_by(user=editor).order_by("name")

    def clean(self):
        data = super().clean()
        if "user" in data and "team" in data and (data["user"] is None) == (data["team"] is None):
            message = "Give exactly one of user and team."
            self.add_error("user", message)
            self.add_error("team", message)
        return data


class QuotaFilterForm(forms.Form):
    period = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "e.g. 2026-Q3"}))
    user = forms.ModelChoiceField(queryset=None, required=False, empty_label="Anyone")
    team = forms.ModelChoiceField(queryset=None, required=False, empty_label="Any team")

    def __init__(self, *args, editor, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = selectors.quota_users_assignable_by(user=editor).order_by("username")
        self.fields["team"].queryset = selectors.quota_teams_assignable_by(user=editor).order_by("name")

    def clean_period(self):
        text = self.cleaned_data["period"].strip()
        if not text:
            return None
        try:
            return Period.parse(text)
        except PeriodError as error:
            raise ValidationError(str(error)) from error

    def filter(self, quotas):
        data = self.cleaned_data
        if data.get("period"):
            # Quotas that overlap the period.
            quotas = quotas.filter(period_start__lt=data["period"].end, period_end__gt=data["period"].start)
        if data.get("user"):
            quotas = quotas.filter(user=data["user"])
        if data.get("team"):
            quotas = quotas.filter(team=data["team"])
        return quotas


def _holder(quota: Quota) -> str:
    who = f"team {quota.team}" if quota.team_id else str(quota.user)
    return f"{who} from {quota.period_start:%Y-%m-%d} to {quota.period_end:%Y-%m-%d}"


def _fields(form: QuotaForm) -> dict:
    data = form.cleaned_data
    return {name: data[name] for name in ("user", "team", "period_start", "period_end", "amount")}


@quota_editor_required
def quota_list(request: HttpRequest) -> HttpResponse:
    """The quotas the user may change, filtered; a POST creates one."""
    form = QuotaForm(request.POST or None, editor=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            quota = services.create_quota(actor=request.user, **_fields(form))
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Set the quota of {_holder(quota)}.")
            return redirect("settings:quotas")
    filters = QuotaFilterForm(request.GET, editor=request.user, auto_id="filter_%s")  # ids apart from the form
    quotas = selectors.editable_quotas(user=request.user).order_by("-period_start", "team__name", "user__username")
    quotas = filters.filter(quotas) if filters.is_valid() else quotas.none()
    status = 400 if request.method == "POST" or not filters.is_valid() else 200
    context = {"quotas": quotas, "form": form, "filters": filters, "section": "quotas"}
    return render(request, "settings/quotas.html", context, status=status)


@quota_editor_required
def quota_edit(request: HttpRequest, pk: int) -> HttpResponse:
    quota: Quota = get_object_or_404(selectors.editable_quotas(user=request.user), pk=pk)
    initial = {name: getattr(quota, name) for name in ("user", "team", "period_start", "period_end", "amount")}
    form = QuotaForm(request.POST or None, initial=initial, editor=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            services.update_quota(quota=quota, actor=request.user, **_fields(form))
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Saved the quota of {_holder(quota)}.")
            return redirect("settings:quotas")
    status = 400 if request.method == "POST" else 200
    context = {"quota": quota, "form": form, "section": "quotas"}
    return render(request, "settings/quota_edit.html", context, status=status)


@quota_editor_required
@require_POST
def quota_delete(request: HttpRequest, pk: int) -> HttpResponse:
    quota: Quota = get_object_or_404(selectors.editable_quotas(user=request.user), pk=pk)
    label = _holder(quota)
    services.delete_quota(quota=quota, actor=request.user)
    messages.success(request, f"Deleted the quota of {label}.")
    return redirect("settings:quotas")


# --- The learning settings (admins) --------------------------------------------------------------------------------


class LearningSettingsForm(forms.Form):
    lookback_days = forms.IntegerField(
        label="Learning window (days)",
        min_value=0,
        max_value=LOOKBACK_DAYS_MAX,
        help_text="Learned probabilities count the deals closed in this many days before each recompute; "
        "0 counts all history.",
    )
    prior_strength = forms.IntegerField(
        label="Prior strength (k)",
        min_value=0,
        max_value=PRIOR_STRENGTH_MAX,
        help_text="How many closed deals' worth of weight a stage's configured probability keeps: "
        "p = (won + k·p0) / (won + lost + k).",
    )


@admin_required
def metrics_settings(request: HttpRequest) -> HttpResponse:
    """The learning settings in effect (the environment's until an admin saves them); a POST saves them."""
    current = selectors.learning_settings()
    initial = {"lookback_days": current.lookback_days, "prior_strength": current.prior_strength}
    form = LearningSettingsForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.update_metrics_settings(actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, "Saved. The learned probabilities use them from the next recompute, queued now.")
            return redirect("settings:metrics")
    run = selectors.latest_run()
    context = {"form": form, "current": current, "run": run, "section": "metrics"}
    context["in_numbers"] = selectors.learning_of_run(run) if run else None
    return render(request, "settings/metrics.html", context, status=400 if request.method == "POST" else 200)
