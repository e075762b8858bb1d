"""Leads (/leads/): the filtered list, a new lead, and a lead's page: BANT qualification, status steps, conversion into
a deal, activities."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from config.forms import add_service_errors
from pipeline import selectors, services
from pipeline.forms import (
    ActivityForm,
    ConvertLeadForm,
    LeadCreateForm,
    LeadFilterForm,
    LeadQualificationForm,
    LeadStatusForm,
)
from pipeline.models import LEAD_STATUS_PATH, LeadStatus
from pipeline.views.activities import create_activity
from pipeline.views.responses import is_htmx, toast


def _lead_export_url(filter_form: LeadFilterForm) -> str:
    """The API's CSV export of the leads the list shows (the same export code, the same filters)."""
    filters = filter_form.filters()
    query = {
        "status": filters["status"],
        "owner": filters["owner"].pk if filters["owner"] else "",
        "source": filters["source"],
        "search": filters["text"],
    }
    return f"{reverse('lead-export')}?{urlencode({k: v for k, v in query.items() if v})}".rstrip("?")


@login_required
@require_GET
def lead_list(request: HttpRequest) -> HttpResponse:
    """Leads with filters by status, owner, source and text; 50 a page."""
    filter_form = LeadFilterForm(request.GET or None, user=request.user)
    leads = selectors.lead_list(user=request.user, **filter_form.filters())
    page = Paginator(leads, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "filter_form": filter_form,
        "page": page,
        "query": query.urlencode(),
        "sources": selectors.lead_sources(user=request.user),
        "export_url": _lead_export_url(filter_form),
    }
    if is_htmx(request) and request.headers.get("HX-Target") == "lead-results":
        return render(request, "pipeline/partials/lead_results.html", context)
    return render(request, "pipeline/lead_list.html", context)


@login_required
def lead_create(request: HttpRequest) -> HttpResponse:
    """A new lead, through `services.create_lead`; then its page."""
    form = LeadCreateForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            lead = services.create_lead(actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Created the lead {lead}.")
            return redirect("pipeline:lead", pk=lead.pk)
    return render(request, "pipeline/lead_create.html", {"form": form})


def _lead_context(request: HttpRequest, lead, **forms) -> dict:
    can_edit = selectors.editable_leads(request.user).filter(pk=lead.pk).exists()
    path = [status for status in LEAD_STATUS_PATH if status != LeadStatus.CONVERTED]
    reached = {status: getattr(lead, f"{status}_at", None) for status in path[1:]}
    return {
        "lead": lead,
        "can_edit": can_edit,
        "status_steps": [
            {
                "value": status.value,
                "label": status.label,
                "current": lead.status == status,
                "reached_at": reached.get(status, lead.created_at if status == LeadStatus.NEW else None),
            }
            for status in path
        ],
        "qualification_form": forms.get("qualification_form")
        or LeadQualificationForm(initial=LeadQualificationForm.initial_for(lead)),
        "convert_form": forms.get("convert_form") or ConvertLeadForm(user=request.user),
        "status_form": forms.get("status_form") or LeadStatusForm(),
        "activities": list(selectors.lead_activities(lead=lead)),
        "activity_form": ActivityForm(),
        "target": lead,
        "now": timezone.now(),
    }


@login_required
@require_GET
def lead_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A lead: its BANT qualification, its status steps, converting it to a deal, and its activities."""
    lead = get_object_or_404(
        selectors.visible_leads(request.user).select_related("owner", "deal", "organization", "contact"), pk=pk
    )
    return render(request, "pipeline/lead_detail.html", _lead_context(request, lead))


@login_required
@require_POST
def lead_qualify(request: HttpRequest, pk: int) -> HttpResponse:
    """Save a lead's BANT answers through `services.update_lead`."""
    lead = get_object_or_404(selectors.editable_leads(request.user).select_related("owner", "deal"), pk=pk)
    form = LeadQualificationForm(request.POST)
    if form.is_valid():
        try:
            lead = services.update_lead(lead=lead, actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            if not is_htmx(request):
                messages.success(request, "Qualification saved.")
                return redirect("pipeline:lead", pk=lead.pk)
            form = LeadQualificationForm(initial=LeadQualificationForm.initial_for(lead))
            response = render(
                request, "pipeline/partials/lead_qualification.html", {"lead": lead, "form": form, "can_edit": True}
            )
            response.write(toast(request, "Qualification saved."))
            return response
    if not is_htmx(request):
        return render(request, "pipeline/lead_detail.html", _lead_context(request, lead, qualification_form=form))
    return render(request, "pipeline/partials/lead_qualification.html", {"lead": lead, "form": form, "can_edit": True})


@login_required
@require_POST
def lead_status(request: HttpRequest, pk: int) -> HttpResponse:
    """Move a lead to a status through `services.advance_lead`."""
    lead = get_object_or_404(selectors.editable_leads(request.user).select_related("owner", "deal"), pk=pk)
    form = LeadStatusForm(request.POST)
    if form.is_valid():
        try:
            lead = services.advance_lead(
                lead=lead, actor=request.user, status=form.cleaned_data["status"], reason=form.cleaned_data["reason"]
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Status: {lead.get_status_display()}.")
            return redirect("pipeline:lead", pk=lead.pk)
    return render(request, "pipeline/lead_detail.html", _lead_context(request, lead, status_form=form))


@login_required
@require_POST
def lead_convert(request: HttpRequest, pk: int) -> HttpResponse:
    """Convert a lead into a deal through `services.convert_lead`, then open the deal."""
    lead = get_object_or_404(selectors.editable_leads(request.user).select_related("owner", "deal"), pk=pk)
    form = ConvertLeadForm(request.POST, user=request.user)
    if form.is_valid():
        try:
            deal = services.convert_lead(lead=lead, actor=request.user, **form.service_arguments())
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Converted into the deal “{deal.title}”.")
            return redirect("pipeline:deal", pk=deal.pk)
    return render(request, "pipeline/lead_detail.html", _lead_context(request, lead, convert_form=form))


@login_required
@require_POST
def lead_activity_create(request: HttpRequest, pk: int) -> HttpResponse:
    """Log an activity on a lead, or plan the next step."""
    return create_activity(request, get_object_or_404(selectors.editable_leads(request.user), pk=pk))
