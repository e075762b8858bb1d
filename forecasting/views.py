"""The forecast dashboard and the forecast call (browser pages): thin views over `forecasting.dashboard`, which
reads snapshots only, and `forecasting.call_page`, whose submit and adjust forms write through the services.

"Recompute now" queues the existing Celery task; the page then polls a small status partial with htmx until a
newer complete run exists, and reloads to show it. With the broker away the page still renders and the button
says that it could not queue.
"""

import json
import logging
import time
from datetime import date
from urllib.parse import urlencode

from celery.result import AsyncResult
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from accounts.models import Team, User
from forecasting.call_page import build_forecast_page
from forecasting.dashboard import build_dashboard, scopes_for, waterfall_panel
from forecasting.forms import CallForm
from forecasting.models import CALL_PERIOD_KINDS, CallCategory, PeriodKind
from forecasting.periods import KINDS, Period, PeriodError
from forecasting.selectors import freshness, latest_run
from forecasting.services import adjust_forecast, submit_forecast

logger = logging.getLogger(__name__)

# A recompute still queued after this long has no worker to run it: stop polling and say so.
GIVE_UP_POLLING_AFTER_SECONDS = 300


def _may_recompute(user) -> bool:
    return user.is_admin or user.is_manager


def _asked_period(text: str | None, kind: str | None) -> tuple[Period, bool]:
    """The period of `?period=` (or the current one of `?kind=`, default this month), and whether `?period=` was
    given but could not be read (the page then shows this month and says so)."""
    if not text:
        return Period.current(kind if kind in KINDS else PeriodKind.MONTH), False
    try:
        return Period.parse(text), False
    except PeriodError:
        return Period.current(PeriodKind.MONTH), True


def _asked_day(text: str | None) -> date | None:
    """A YYYY-MM-DD of the waterfall's form; None (the default) when absent or unreadable."""
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    period, bad_period = _asked_period(request.GET.get("period"), request.GET.get("kind"))
    scopes = scopes_for(request.user)
    scope = next((s for s in scopes if str(s.team_id) == request.GET.get("team")), scopes[0])
    try:
        pipeline_id = int(request.GET.get("pipeline", ""))
    except ValueError:
        pipeline_id = None
    funnel_of_period = request.GET.get("cohort") == "period"
    board = build_dashboard(
        user=request.user, period=period, scope=scope, pipeline_id=pipeline_id, funnel_of_period=funnel_of_period
    )
    fresh = freshness(board.run)
    context = {
        "board": board,
        "period": period,
        "period_kinds": [(kind, kind.label, Period.current(kind)) for kind in KINDS],
        "bad_period": bad_period,
        "scopes": scopes,
        "scope": scope,
        "chart_data": board.chart_data(),
        "links": board.links(),
        "may_recompute": _may_recompute(request.user),
        "just_computed": fresh.age_seconds is not None and fresh.age_seconds < 60,
        "out_of_date": fresh.out_of_date,
        "funnel_of_period": funnel_of_period,
        "query": {
            "cohort": "period" if funnel_of_period else "all",
            "period": period.key,
            "team": scope.team_id or "",
            "pipeline": board.pipeline.pk if board.pipeline else "",
        },
    }
    return render(request, "forecasting/dashboard.html", context)


@login_required
@require_GET
def waterfall(request: HttpRequest) -> HttpResponse:
    """The dashboard's waterfall panel (loaded by the page after it renders: it is computed from the deal history
    when asked, while the rest of the dashboard reads the snapshots only)."""
    period, _ = _asked_period(request.GET.get("period"), request.GET.get("kind"))
    scopes = scopes_for(request.user)
    scope = next((s for s in scopes if str(s.team_id) == request.GET.get("team")), scopes[0])
    panel = waterfall_panel(
        user=request.user,
        period=period,
        scope=scope,
        from_day=_asked_day(request.GET.get("wf_from")),
        to_day=_asked_day(request.GET.get("wf_to")),
    )
    query = {key: request.GET.get(key, "") for key in ("team", "pipeline", "cohort")}
    bars = panel.bars()
    context = {
        "period": period,
        "query": query,
        "waterfall": panel,
        # On the canvas rather than in a JSON script block: htmx drops script elements from what it swaps in.
        "waterfall_bars": bars,
        "waterfall_bars_json": json.dumps(bars),
        "waterfall_deals_url": reverse("forecast-waterfall-deals") + "?" + urlencode(panel.deals_query),
    }
    return render(request, "forecasting/partials/waterfall.html", context)


@login_required
@require_POST
def recompute(request: HttpRequest) -> HttpResponse:
    """Queue a full recompute (managers and admins) and answer the status partial that follows it."""
    from forecasting.tasks import recompute_metrics_task

    if not _may_recompute(request.user):
        raise PermissionDenied("Only managers and admins may start a recompute.")
    run = latest_run()
    try:
        result = recompute_metrics_task.apply_async(kwargs={"reason": "request"}, retry=False)
    except Exception:  # the broker is away: say so on the page rather than fail
        logger.warning("could not queue a requested metrics recompute", exc_info=True)
        result = None
    if request.headers.get("HX-Request") != "true":  # a plain form post (no JavaScript): back to the page
        if result is None:
            messages.error(request, "Could not queue the recompute: the task queue is unavailable.")
        else:
            messages.success(request, "Recompute queued: reload in a few seconds for the new numbers.")
        return redirect(_next_url(request))
    if result is None:
        return _status(request, state="unavailable")
    return _status(request, state="queued", task_id=result.id, since=run.pk if run else 0, started=time.time())


def _next_url(request: HttpRequest) -> str:
    candidate = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse("forecasting:dashboard")


@login_required
@require_GET
def recompute_status(request: HttpRequest, task_id: str) -> HttpResponse:
    """Where a queued recompute is: polled every second; once a newer run is complete, the page reloads."""
    if not _may_recompute(request.user):
        raise PermissionDenied("Only managers and admins may follow a recompute.")
    try:
        since = int(request.GET.get("since", "0"))
        started = float(request.GET.get("started", "0"))
    except ValueError:
        since, started = 0, 0.0
    run = latest_run()
    if run is not None and run.pk != since:
        response = _status(request, state="done")
        response["HX-Refresh"] = "true"
        return response
    try:
        state = AsyncResult(task_id).state
    except Exception:  # the result backend is away
        logger.warning("could not read the state of metrics recompute %s", task_id, exc_info=True)
        return _status(request, state="lost")
    if state == "FAILURE":
        return _status(request, state="failed")
    if state == "PENDING" and started and time.time() - started > GIVE_UP_POLLING_AFTER_SECONDS:
        return _status(request, state="unattended")
    return _status(
        request,
        state="running" if state in {"STARTED", "SUCCESS"} else "queued",
        task_id=task_id,
        since=since,
        started=started,
    )


def _status(request: HttpRequest, *, state: str, **context) -> HttpResponse:
    started = context.get("started")
    elapsed = max(int(time.time() - started), 0) if started else 0
    return render(
        request,
        "forecasting/partials/recompute_status.html",
        {"state": state, "elapsed": elapsed, **context},
    )


# --- The forecast call: /forecast/ ----------------------------------------------------------------------------------


def _call_period(text: str | None, kind: str | None) -> tuple[Period, bool]:
    """The month or quarter of `?period=` (default: this quarter, or the current one of `?kind=`), and whether
    `?period=` was given but is not a month or a quarter (the page then shows this quarter and says so)."""
    if kind not in CALL_PERIOD_KINDS:
        kind = PeriodKind.QUARTER
    if not text:
        return Period.current(kind), False
    try:
        period = Period.parse(text)
    except PeriodError:
        return Period.current(PeriodKind.QUARTER), True
    if period.kind not in CALL_PERIOD_KINDS:
        return Period.current(PeriodKind.QUARTER), True
    return period, False


def _call_category(text: str | None) -> str:
    return text if text in CallCategory.values else CallCategory.COMMIT


def _render_call(request: HttpRequest, period: Period, category: str, *, errors=None, bad_period=False, status=200):
    """The page, or for htmx only its forecast-call block (the tables, the trend, pacing), with `errors` of a form."""
    page = build_forecast_page(user=request.user, period=period, category=category)
    context = {
        "page": page,
        "period": period,
        "category": category,
        "categories": CallCategory.choices,
        "period_kinds": [(kind, PeriodKind(kind).label, Period.current(kind)) for kind in CALL_PERIOD_KINDS],
        "bad_period": bad_period,
        "trend_json": json.dumps(page.chart_data()),
        "errors": errors or {},
    }
    partial = request.headers.get("HX-Request") == "true" and request.method == "POST"
    template = "forecasting/partials/forecast_call.html" if partial else "forecasting/forecast.html"
    return render(request, template, context, status=status)


@login_required
@require_GET
def forecast_call(request: HttpRequest) -> HttpResponse:
    period, bad_period = _call_period(request.GET.get("period"), request.GET.get("kind"))
    return _render_call(request, period, _call_category(request.GET.get("category")), bad_period=bad_period)


def _call_write(request: HttpRequest, form_id: str, write) -> HttpResponse:
    """Run `write(period, category, form)` for a posted submit or adjust form; answer the block again (htmx) with
    the form's errors in its row, or redirect back to the page with a message (a plain form post)."""
    period, bad_period = _call_period(request.POST.get("period"), None)
    category = _call_category(request.POST.get("category"))
    form = CallForm(request.POST)
    errors: dict = {}
    if bad_period:
        errors["period"] = ["Choose a month or a quarter."]
    if form.is_valid() and not errors:
        try:
            write(period, category, form.cleaned_data)
        except ValidationError as error:
            errors = error.message_dict if hasattr(error, "error_dict") else {"amount": error.messages}
    else:
        errors |= form.errors
    htmx = request.headers.get("HX-Request") == "true"
    if not htmx:
        if errors:
            messages.error(request, " ".join(str(text) for texts in errors.values() for text in texts))
        else:
            messages.success(request, "Saved.")
        return redirect(f"{reverse('forecast:call')}?{urlencode({'period': period.key, 'category': category})}")
    return _render_call(request, period, category, errors={form_id: errors} if errors else {})


@login_required
@require_POST
def submit_call(request: HttpRequest) -> HttpResponse:
    """A rep's own number, or (with `team`) a manager's number for a team they manage."""
    team = None
    if request.POST.get("team"):
        team = get_object_or_404(Team.objects.filter(managers=request.user), pk=_id(request.POST["team"]))

    def write(period: Period, category: str, data: dict) -> None:
        submit_forecast(
            user=request.user, period=period, category=category, amount=data["amount"], note=data["note"], team=team
        )

    return _call_write(request, f"team-{team.pk}" if team else f"member-{request.user.pk}", write)


@login_required
@require_POST
def adjust_call(request: HttpRequest, user_id: int) -> HttpResponse:
    """A manager's adjustment of a member's number (an admin's of anyone's), with its required note: a member the
    user may not see is a 404, one they see but may not adjust a 403 (`forecasting.services.adjust_forecast`)."""
    member = get_object_or_404(User, pk=user_id)

    def write(period: Period, category: str, data: dict) -> None:
        adjust_forecast(
            user=request.user, member=member, period=period, category=category, amount=data["amount"], note=data["note"]
        )

    return _call_write(request, f"member-{member.pk}", write)


@login_required
@require_POST
def adjust_team_call(request: HttpRequest, team_id: int) -> HttpResponse:
    """An admin's adjustment of a team's number (its manager's), with its required note; 403 for anyone else."""
    team = get_object_or_404(Team, pk=team_id)

    def write(period: Period, category: str, data: dict) -> None:
        adjust_forecast(
            user=request.user, member=team, period=period, category=category, amount=data["amount"], note=data["note"]
        )

    return _call_write(request, f"team-{team.pk}", write)


def _id(text: str) -> int:
    try:
        return int(text)
    except ValueError as error:
        raise Http404("No such team.") from error
