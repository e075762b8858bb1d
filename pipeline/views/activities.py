"""Activities: the inbox of planned ones (/activities/: overdue, today, upcoming; done, then plan the next step), and
the timeline of a deal or a lead where one is logged or planned."""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from config.forms import add_service_errors
from pipeline import selectors, services
from pipeline.forms import ActivityForm, InboxFilterForm
from pipeline.models import Deal, Lead
from pipeline.views.responses import first_error, is_htmx, next_url, sees_others, toast


def timeline_response(request: HttpRequest, record: Deal | Lead, form: ActivityForm | None = None) -> HttpResponse:
    context = {
        "activities": list(selectors.timeline(record=record)),
        "activity_form": form or ActivityForm(),
        "target": record,
        "can_edit": True,
        "now": timezone.now(),
    }
    return render(request, "pipeline/partials/timeline.html", context)


def create_activity(request: HttpRequest, record: Deal | Lead) -> HttpResponse:
    form = ActivityForm(request.POST)
    on = {"deal": record} if isinstance(record, Deal) else {"lead": record}
    if form.is_valid():
        try:
            services.log_activity(actor=request.user, **on, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            message = "Next step planned." if form.cleaned_data["due_at"] else "Activity logged."
            if not is_htmx(request):
                messages.success(request, message)
                return redirect(_record_url(record))
            response = timeline_response(request, record)
            response.write(toast(request, message))
            return response
    if not is_htmx(request):
        messages.error(request, first_error(form))
        return redirect(_record_url(record))
    return timeline_response(request, record, form)


def _record_url(record: Deal | Lead) -> str:
    if isinstance(record, Deal):
        return reverse("pipeline:deal", args=[record.pk])
    return reverse("pipeline:lead", args=[record.pk])


@login_required
@require_GET
def activity_inbox(request: HttpRequest) -> HttpResponse:
    """Planned activities of the user (or, for whoever sees others', of a chosen owner): overdue, today, upcoming."""
    now = timezone.localtime()
    start_of_tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    filter_form = InboxFilterForm(request.GET or None, user=request.user)
    planned = list(selectors.activity_inbox(user=request.user, owner=filter_form.chosen_owner())[:500])
    sections = [
        ("overdue", "Overdue", [a for a in planned if a.due_at < now]),
        ("today", "Today", [a for a in planned if now <= a.due_at < start_of_tomorrow]),
        ("upcoming", "Upcoming", [a for a in planned if a.due_at >= start_of_tomorrow]),
    ]
    context = {"sections": sections, "now": now, "filter_form": filter_form, "sees_others": sees_others(request)}
    return render(request, "pipeline/activity_inbox.html", context)


@login_required
@require_POST
def activity_complete(request: HttpRequest, pk: int) -> HttpResponse:
    """Mark a planned activity done; on the inbox the row then offers to plan the next step."""
    activity = get_object_or_404(
        selectors.editable_activities(request.user).select_related("deal", "lead", "deal__organization"), pk=pk
    )
    activity = services.complete_activity(activity=activity, actor=request.user)
    message = f"Done: {activity.subject}"
    if not is_htmx(request):
        messages.success(request, message)
        return redirect(next_url(request, reverse("pipeline:activities")))
    if request.POST.get("from") == "timeline":
        response = timeline_response(request, activity.deal or activity.lead)
    else:
        form = ActivityForm(initial={"kind": activity.kind})
        response = render(request, "pipeline/partials/inbox_done.html", {"activity": activity, "form": form})
    response.write(toast(request, message))
    return response


@login_required
@require_POST
def activity_plan_next(request: HttpRequest, pk: int) -> HttpResponse:
    """Plan the next step on the deal or lead of a (done) activity, from the inbox."""
    activity = get_object_or_404(
        selectors.editable_activities(request.user).select_related("deal", "lead", "deal__organization"), pk=pk
    )
    form = ActivityForm(request.POST)
    if form.is_valid() and form.cleaned_data["due_at"] is None:
        form.add_error("due_at", "Give the next step a due time.")
    if form.is_valid():
        try:
            services.log_activity(actor=request.user, deal=activity.deal, lead=activity.lead, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            context = {"activity": activity, "planned": form.cleaned_data}
            response = render(request, "pipeline/partials/inbox_done.html", context)
            response.write(toast(request, "Next step planned."))
            return response
    return render(request, "pipeline/partials/inbox_done.html", {"activity": activity, "form": form})
