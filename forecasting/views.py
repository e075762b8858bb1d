"""The forecast dashboard (browser pages): thin views over `forecasting.dashboard`, which reads snapshots only.

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
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from forecasting.dashboard import build_dashboard, scopes_for, waterfall_panel
from forecasting.models import PeriodKind
from forecasting.periods import KINDS, Period, PeriodError
from forecasting.selectors import freshness, latest_run

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
