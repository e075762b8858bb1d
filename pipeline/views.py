"""Browser pages of the pipeline: thin views that read through `pipeline.selectors` and write through
`pipeline.services`. htmx requests get partials (templates/pipeline/partials/); plain requests get whole pages,
so every form also works without JavaScript.
"""

import json
from datetime import timedelta
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from accounts.models import User
from accounts.selectors import assignable_owners
from config.exceptions import StaleVersion
from config.forms import add_service_errors
from pipeline import selectors, services
from pipeline.api.imports import report_csv_response
from pipeline.forms import (
    ActivityForm,
    BoardFilterForm,
    ConvertLeadForm,
    DealCreateForm,
    DealFieldsForm,
    ImportMappingForm,
    ImportUploadForm,
    InboxFilterForm,
    LeadCreateForm,
    LeadFilterForm,
    LeadQualificationForm,
    LeadStatusForm,
    MoveForm,
    StageEntryForm,
)
from pipeline.importing import FileProblem, ImportOptions
from pipeline.importing.fields import ENTERED_AT_PREFIX
from pipeline.importing.jobs import field_names, preview_file, start_job_from_stored_file, values_in_columns
from pipeline.models import (
    LEAD_STATUS_PATH,
    REQUIRABLE_DEAL_FIELDS,
    Deal,
    ImportJob,
    ImportKind,
    ImportStatus,
    Lead,
    LeadStatus,
    Stage,
    StageKind,
)

STALE_MESSAGE = (
    "“{title}” was changed by someone else since you loaded it. It now shows the latest version: "
    "check it and try again."
)


# --- helpers ------------------------------------------------------------------------------------------------------


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _trigger(response: HttpResponse, event: str, detail: dict | None = None, *, after_swap: bool = False) -> None:
    header = "HX-Trigger-After-Swap" if after_swap else "HX-Trigger"
    events = json.loads(response.get(header, "{}"))
    events[event] = detail or {}
    response[header] = json.dumps(events)


def _toast(request: HttpRequest, message: str, level: str = "success") -> str:
    """An out-of-band toast appended to #toasts by htmx."""
    return render_to_string("pipeline/partials/toast.html", {"message": message, "level": level}, request=request)


def _next_url(request: HttpRequest, default: str) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return default


def _first_error(form) -> str:
    for errors in form.errors.values():
        return " ".join(errors)
    return "Please check your input."


# --- Home ---------------------------------------------------------------------------------------------------------


@login_required
def home(request):
    """The landing page after login: per pipeline, the open, won and lost deals the user can see."""
    return render(request, "home.html", {"summary": selectors.pipeline_summary(user=request.user)})


# --- The pipeline board -------------------------------------------------------------------------------------------


def _board_context(request: HttpRequest, pipeline_id: int | None, data) -> dict:
    pipelines = list(selectors.visible_pipelines(request.user))
    if pipeline_id is None:
        pipeline = pipelines[0] if pipelines else None
    else:
        pipeline = next((p for p in pipelines if p.pk == pipeline_id), None)
        if pipeline is None:
            raise Http404("No such pipeline.")
    filter_form = BoardFilterForm(data or None, user=request.user)
    context = {
        "pipelines": pipelines,
        "pipeline": pipeline,
        "filter_form": filter_form,
        "now": timezone.now(),
        "sees_others": _sees_others(request),
    }
    if pipeline is None:
        return context
    stages = list(pipeline.stages.order_by("order"))
    deals = selectors.board_deals(user=request.user, pipeline=pipeline, **filter_form.filters())
    open_stages = [stage for stage in stages if stage.kind == StageKind.OPEN]
    context.update(
        stages=stages,
        columns=selectors.board_columns(user=request.user, deals=deals, stages=open_stages),
        won_stage=next((stage for stage in stages if stage.kind == StageKind.WON), None),
        lost_stage=next((stage for stage in stages if stage.kind == StageKind.LOST), None),
        filter_query=_filter_query(filter_form),
    )
    return context


def _sees_others(request: HttpRequest) -> bool:
    """Whether owner and team filters help: the user sees other people's records."""
    return request.user.is_admin or request.user.is_manager or settings.REP_VISIBILITY == "team"


def _filter_query(filter_form: BoardFilterForm) -> str:
    filters = filter_form.filters()
    params = []
    if filters["owner"]:
        params.append(f"owner={filters['owner'].pk}")
    if filters["team"]:
        params.append(f"team={filters['team'].pk}")
    if filters["text"]:
        params.append(f"q={quote(filters['text'])}")
    return "&".join(params)


@login_required
@require_GET
def board(request: HttpRequest, pipeline_id: int | None = None) -> HttpResponse:
    """The kanban board of a pipeline: a column per open stage, won/lost drop zones, filters."""
    context = _board_context(request, pipeline_id, request.GET)
    if _is_htmx(request) and request.headers.get("HX-Target") == "board":
        return render(request, "pipeline/partials/board_columns.html", context)
    return render(request, "pipeline/board.html", context)


@login_required
@require_GET
def board_column_more(request: HttpRequest, pipeline_id: int, stage_id: int) -> HttpResponse:
    """The next cards of one column (loaded when the end of the column scrolls into view)."""
    stage = get_object_or_404(Stage.objects.select_related("pipeline"), pk=stage_id, pipeline_id=pipeline_id)
    filter_form = BoardFilterForm(request.GET, user=request.user)
    deals = selectors.board_deals(user=request.user, pipeline=stage.pipeline, **filter_form.filters())
    column = selectors.board_column_page(
        user=request.user, deals=deals, stage=stage, cursor=request.GET.get("cursor", "")
    )
    context = {
        "column": column,
        "pipeline": stage.pipeline,
        "stages": list(stage.pipeline.stages.order_by("order")),
        "filter_query": _filter_query(filter_form),
        "now": timezone.now(),
    }
    return render(request, "pipeline/partials/column_cards.html", context)


@login_required
@require_POST
def deal_move(request: HttpRequest, pk: int) -> HttpResponse:
    """Move a deal to a stage via `services.move_deal`; ask for the target stage's missing fields or a lost reason."""
    deal = get_object_or_404(selectors.editable_deals(request.user).select_related("pipeline", "stage"), pk=pk)
    form = MoveForm(request.POST, deal=deal)
    if not form.is_valid():
        return _move_failed(request, deal, _first_error(form))
    stage, version = form.cleaned_data["stage"], form.cleaned_data["version"]
    from_stage = deal.stage
    entry = None
    missing = services.missing_required_fields(deal=deal, stage=stage)
    if stage.pk != deal.stage_id and (missing or stage.kind == StageKind.LOST):
        data = request.POST if request.POST.get("entry") else None
        entry = StageEntryForm(data, deal=deal, stage=stage, missing=missing, user=request.user)
        if not entry.is_valid():
            return _move_dialog(request, deal, stage, version, entry)
    try:
        moved = services.move_deal(
            deal=deal,
            stage=stage,
            actor=request.user,
            expected_version=version,
            **(entry.service_arguments() if entry else {}),
        )
    except StaleVersion:
        return _move_failed(request, deal, STALE_MESSAGE.format(title=deal.title), refresh=True)
    except ValidationError as error:
        if entry is None:
            # The stage's requirements changed since the page was drawn: ask for what it needs now.
            missing = [name for name in error.message_dict if name in REQUIRABLE_DEAL_FIELDS]
            entry = StageEntryForm(None, deal=deal, stage=stage, missing=missing, user=request.user)
        add_service_errors(entry, error)
        return _move_dialog(request, deal, stage, version, entry)
    return _move_done(request, moved, from_stage)


def _move_done(request: HttpRequest, deal: Deal, from_stage: Stage) -> HttpResponse:
    if deal.stage_id == from_stage.pk:
        message = f"“{deal.title}” is already in {deal.stage.name}."
    elif deal.status == StageKind.WON:
        message = f"“{deal.title}” is won."
    elif deal.status == StageKind.LOST:
        message = f"“{deal.title}” is lost ({deal.lost_reason})."
    else:
        message = f"“{deal.title}” moved to {deal.stage.name}."
    if not _is_htmx(request):
        messages.success(request, message)
        return redirect(_next_url(request, reverse("pipeline:board_pipeline", args=[deal.pipeline_id])))
    if request.POST.get("next"):
        # From the deal page: everything on it (path, history, status) changed, so it is drawn again.
        messages.success(request, message)
        response = HttpResponse()
        response["HX-Redirect"] = _next_url(request, reverse("pipeline:deal", args=[deal.pk]))
        return response
    filter_form = BoardFilterForm(request.POST, user=request.user)
    deals = selectors.board_deals(user=request.user, pipeline=deal.pipeline, **filter_form.filters())
    changed = [stage for stage in {from_stage.pk: from_stage, deal.stage_id: deal.stage}.values() if stage.is_open]
    context = {
        "card": selectors.board_card(user=request.user, deal_id=deal.pk) if deal.status == StageKind.OPEN else None,
        "stages": list(deal.pipeline.stages.order_by("order")),
        "headers": selectors.stage_totals(deals=deals, stages=changed),
        "now": timezone.now(),
        "toast": message,
    }
    response = render(request, "pipeline/partials/move_done.html", context)
    if context["card"] is None:
        response["HX-Reswap"] = "delete"
    _trigger(response, "crm:moved", {"deal": deal.pk, "stage": deal.stage_id})
    return response


def _move_failed(request: HttpRequest, deal: Deal, message: str, *, refresh: bool = False) -> HttpResponse:
    if not _is_htmx(request):
        messages.error(request, message)
        return redirect(_next_url(request, reverse("pipeline:deal", args=[deal.pk])))
    if request.POST.get("next"):
        # From the deal page: draw it again, with the latest version and the message.
        messages.error(request, message)
        response = HttpResponse()
        response["HX-Redirect"] = _next_url(request, reverse("pipeline:deal", args=[deal.pk]))
        return response
    body = _toast(request, message, "error")
    card = selectors.board_card(user=request.user, deal_id=deal.pk) if refresh else None
    if card is not None and card.status == StageKind.OPEN:
        context = {"card": card, "stages": list(deal.pipeline.stages.order_by("order")), "now": timezone.now()}
        body += render_to_string("pipeline/partials/card.html", {**context, "oob": True}, request=request)
    elif refresh:
        # Someone else closed the deal (or it left the user's sight): it no longer belongs on the board.
        body += format_html('<div id="deal-{}" hx-swap-oob="delete"></div>', deal.pk)
    response = HttpResponse(body)
    response["HX-Reswap"] = "none"
    _trigger(response, "crm:move-failed", {"deal": deal.pk})
    return response


def _move_dialog(
    request: HttpRequest, deal: Deal, stage: Stage, version: int | None, entry: StageEntryForm
) -> HttpResponse:
    context = {"deal": deal, "stage": stage, "version": version, "form": entry, "next": request.POST.get("next", "")}
    if not _is_htmx(request):
        return render(request, "pipeline/deal_move.html", context)
    response = render(request, "pipeline/partials/move_dialog.html", context)
    response["HX-Retarget"] = "#move-dialog-body"
    response["HX-Reswap"] = "innerHTML"
    _trigger(response, "crm:needs-input", {"deal": deal.pk}, after_swap=True)
    return response


@login_required
def deal_create(request: HttpRequest, pipeline_id: int) -> HttpResponse:
    """A new deal in a pipeline, through `services.create_deal`; then its page."""
    pipeline = get_object_or_404(selectors.visible_pipelines(request.user), pk=pipeline_id)
    form = DealCreateForm(request.POST or None, user=request.user, pipeline=pipeline)
    if request.method == "POST" and form.is_valid():
        try:
            deal = services.create_deal(actor=request.user, pipeline=pipeline, **form.service_arguments())
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Created “{deal.title}”.")
            return redirect("pipeline:deal", pk=deal.pk)
    return render(request, "pipeline/deal_create.html", {"form": form, "pipeline": pipeline})


# --- The deal page ------------------------------------------------------------------------------------------------


# Bookkeeping fields that follow from a change shown elsewhere (the stage path, the version).
AUDIT_HIDDEN_FIELDS = {"stage_entered_at", "forecast_category", "closed_at", "updated_at", "version", "status"}


def _audit_lines(entries, stages: list[Stage]) -> list[dict]:
    """The deal's audit entries as lines a person reads: field label, old and new value (stages by name)."""
    stage_names = {stage.pk: stage.name for stage in stages}
    lines = []
    for entry in entries:
        changes = []
        for name, values in entry.changes.items():
            if name in AUDIT_HIDDEN_FIELDS or not isinstance(values, list) or len(values) != 2:
                continue
            try:
                field = Deal._meta.get_field(name)
            except FieldDoesNotExist:
                continue
            old, new = values
            if name == "stage":
                old, new = stage_names.get(old, old), stage_names.get(new, new)
            elif field.is_relation:
                old = new = None  # ids mean nothing to a reader; the current value is on the page
            changes.append({"label": str(field.verbose_name).capitalize(), "old": old, "new": new})
        lines.append({"entry": entry, "changes": changes})
    return lines


def _deal_context(request: HttpRequest, deal: Deal) -> dict:
    history = list(selectors.deal_history(deal=deal))
    can_edit = selectors.editable_deals(request.user).filter(pk=deal.pk).exists()
    stages = list(deal.pipeline.stages.order_by("order"))
    return {
        "deal": deal,
        "history": history,
        "path": selectors.stage_path(deal=deal, history=history),
        "stages": stages,
        "audit": _audit_lines(selectors.audit_trail(instance=deal)[:25], stages),
        "activities": list(selectors.deal_activities(deal=deal)),
        "activity_form": ActivityForm(),
        "can_edit": can_edit,
        "is_stale": selectors.is_stale(deal),
        "now": timezone.now(),
    }


def _visible_deal(request: HttpRequest, pk: int) -> Deal:
    return get_object_or_404(
        selectors.visible_deals(request.user).select_related(
            "pipeline", "stage", "owner", "organization", "contact", "lost_reason"
        ),
        pk=pk,
    )


def _editable_deal(request: HttpRequest, pk: int) -> Deal:
    return get_object_or_404(
        selectors.editable_deals(request.user).select_related(
            "pipeline", "stage", "owner", "organization", "contact", "lost_reason"
        ),
        pk=pk,
    )


@login_required
@require_GET
def deal_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A deal: its fields, its stage path with time in each stage, its activities and its stage history."""
    return render(request, "pipeline/deal_detail.html", _deal_context(request, _visible_deal(request, pk)))


@login_required
def deal_fields(request: HttpRequest, pk: int) -> HttpResponse:
    """The deal's fields: shown (GET), as a form (GET ?edit=1), or saved through `services.update_deal` (POST)."""
    if request.method == "GET":
        deal = _visible_deal(request, pk)
        if request.GET.get("edit"):
            deal = _editable_deal(request, pk)
            form = DealFieldsForm(initial=DealFieldsForm.initial_for(deal), user=request.user)
            return render(request, "pipeline/partials/deal_fields_form.html", {"deal": deal, "form": form})
        can_edit = selectors.editable_deals(request.user).filter(pk=deal.pk).exists()
        return render(request, "pipeline/partials/deal_fields.html", {"deal": deal, "can_edit": can_edit})
    if request.method != "POST":
        return HttpResponse(status=405)
    deal = _editable_deal(request, pk)
    form = DealFieldsForm(request.POST, user=request.user)
    if form.is_valid():
        try:
            services.update_deal(
                deal=deal, actor=request.user, expected_version=form.cleaned_data["version"], **form.changes()
            )
        except StaleVersion:
            deal = _editable_deal(request, pk)
            form = DealFieldsForm(initial=DealFieldsForm.initial_for(deal), user=request.user)
            notice = STALE_MESSAGE.format(title=deal.title) + " Your changes were not saved."
            context = {"deal": deal, "form": form, "notice": notice}
            return render(request, "pipeline/partials/deal_fields_form.html", context)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            deal = _editable_deal(request, pk)
            if not _is_htmx(request):
                messages.success(request, "Saved.")
                return redirect("pipeline:deal", pk=deal.pk)
            response = render(request, "pipeline/partials/deal_fields.html", {"deal": deal, "can_edit": True})
            response.write(_toast(request, "Saved."))
            return response
    return render(request, "pipeline/partials/deal_fields_form.html", {"deal": deal, "form": form}, status=200)


@login_required
@require_POST
def deal_activity_create(request: HttpRequest, pk: int) -> HttpResponse:
    """Log an activity on a deal, or plan the next step (with a due time)."""
    return _create_activity(request, _editable_deal(request, pk))


@login_required
@require_POST
def lead_activity_create(request: HttpRequest, pk: int) -> HttpResponse:
    """Log an activity on a lead, or plan the next step."""
    return _create_activity(request, get_object_or_404(selectors.editable_leads(request.user), pk=pk))


def _timeline_response(request: HttpRequest, record: Deal | Lead, form: ActivityForm | None = None) -> HttpResponse:
    context = {
        "activities": list(selectors.timeline(record=record)),
        "activity_form": form or ActivityForm(),
        "target": record,
        "can_edit": True,
        "now": timezone.now(),
    }
    return render(request, "pipeline/partials/timeline.html", context)


def _create_activity(request: HttpRequest, record: Deal | Lead) -> HttpResponse:
    form = ActivityForm(request.POST)
    on = {"deal": record} if isinstance(record, Deal) else {"lead": record}
    if form.is_valid():
        try:
            services.log_activity(actor=request.user, **on, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            message = "Next step planned." if form.cleaned_data["due_at"] else "Activity logged."
            if not _is_htmx(request):
                messages.success(request, message)
                return redirect(_record_url(record))
            response = _timeline_response(request, record)
            response.write(_toast(request, message))
            return response
    if not _is_htmx(request):
        messages.error(request, _first_error(form))
        return redirect(_record_url(record))
    return _timeline_response(request, record, form)


def _record_url(record: Deal | Lead) -> str:
    if isinstance(record, Deal):
        return reverse("pipeline:deal", args=[record.pk])
    return reverse("pipeline:lead", args=[record.pk])


# --- Activities ---------------------------------------------------------------------------------------------------


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
    context = {"sections": sections, "now": now, "filter_form": filter_form, "sees_others": _sees_others(request)}
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
    if not _is_htmx(request):
        messages.success(request, message)
        return redirect(_next_url(request, reverse("pipeline:activities")))
    if request.POST.get("from") == "timeline":
        response = _timeline_response(request, activity.deal or activity.lead)
    else:
        form = ActivityForm(initial={"kind": activity.kind})
        response = render(request, "pipeline/partials/inbox_done.html", {"activity": activity, "form": form})
    response.write(_toast(request, message))
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
            response.write(_toast(request, "Next step planned."))
            return response
    return render(request, "pipeline/partials/inbox_done.html", {"activity": activity, "form": form})


# --- Leads --------------------------------------------------------------------------------------------------------


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
    if _is_htmx(request) and request.headers.get("HX-Target") == "lead-results":
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
    lead = get_object_or_404(selectors.visible_leads(request.user).select_related("owner", "deal"), pk=pk)
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
            if not _is_htmx(request):
                messages.success(request, "Qualification saved.")
                return redirect("pipeline:lead", pk=lead.pk)
            form = LeadQualificationForm(initial=LeadQualificationForm.initial_for(lead))
            response = render(
                request, "pipeline/partials/lead_qualification.html", {"lead": lead, "form": form, "can_edit": True}
            )
            response.write(_toast(request, "Qualification saved."))
            return response
    if not _is_htmx(request):
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


# --- CSV import and export ----------------------------------------------------------------------------------------
#
# Upload (the file is stored once) → mapping page (columns, values, options; the mapping of the user's previous import
# of that kind is reused) → "Check" (a dry run: inline for small files) → the job page with its report → "Import"
# (a new job on the same file, run by a Celery worker; the page polls its progress) → the result.

UPLOAD_SALT = "pipeline.imports.upload"
UPLOAD_MAX_AGE = 24 * 3600
REPORT_ROWS_SHOWN = 200


def _upload_token(request: HttpRequest, *, stored_name: str, kind: str, original_name: str) -> str:
    return signing.dumps(
        {"user": request.user.pk, "file": stored_name, "kind": kind, "name": original_name}, salt=UPLOAD_SALT
    )


def _stored_upload(request: HttpRequest, token: str) -> dict:
    """The upload a token names, if it was made for this user and recently; 404 otherwise."""
    try:
        upload = signing.loads(token, salt=UPLOAD_SALT, max_age=UPLOAD_MAX_AGE)
    except signing.BadSignature:
        raise Http404("This upload has expired: upload the file again.") from None
    if upload.get("user") != request.user.pk or upload.get("kind") not in ImportKind.values:
        raise Http404("No such upload.")
    return upload


def _visible_job(request: HttpRequest, pk: int) -> ImportJob:
    return get_object_or_404(selectors.visible_import_jobs(request.user), pk=pk)


@login_required
def imports(request: HttpRequest) -> HttpResponse:
    """Upload a CSV file and pick its kind; the user's past imports below."""
    form = ImportUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        stored_name = default_storage.save(f"imports/uploads/{upload.name}", upload)
        token = _upload_token(
            request, stored_name=stored_name, kind=form.cleaned_data["kind"], original_name=upload.name
        )
        return redirect(f"{reverse('pipeline:import_mapping')}?upload={quote(token)}")
    jobs = selectors.visible_import_jobs(request.user)[:30]
    return render(request, "pipeline/imports.html", {"form": form, "jobs": jobs})


def _value_options(request: HttpRequest, kind: str, stream, mapping: dict[str, str]) -> tuple[dict, dict]:
    """The stage and owner values of the file that name nothing of ours, and what they may be mapped to."""
    if kind != ImportKind.DEALS:
        return {}, {}
    columns = {field: column for column, field in mapping.items() if field in ("stage", "owner")}
    found = values_in_columns(stream=stream, columns=columns)
    stages = sorted(set(selectors.visible_stages(request.user).values_list("name", flat=True)), key=str.lower)
    owners = list(assignable_owners(request.user).order_by("username"))
    known = {
        "stage": {name.lower() for name in stages},
        "owner": {
            name.lower()
            for owner in User.objects.filter(is_active=True)
            for name in (owner.username, owner.email, owner.get_full_name())
            if name
        },
    }
    unknown = {field: [v for v in values if v.lower() not in known[field]] for field, values in found.items()}
    choices = {"stage": stages, "owner": [owner.username for owner in owners]}
    return {field: values for field, values in unknown.items() if values}, choices


@login_required
def import_mapping(request: HttpRequest) -> HttpResponse:
    """Map the columns (and unknown stages and owners) of an uploaded file, then check it or import it."""
    token = request.GET.get("upload", "")
    upload = _stored_upload(request, token)
    kind = upload["kind"]
    try:
        with default_storage.open(upload["file"], "rb") as stream:
            preview = preview_file(kind=kind, stream=stream)
            previous = (
                ImportJob.objects.filter(created_by=request.user, kind=kind).exclude(mapping={}).order_by("-id").first()
            )
            initial_mapping = dict(preview.suggested_mapping)
            if previous:
                initial_mapping.update({c: f for c, f in previous.mapping.items() if c in preview.header})
            unknown_values, value_choices = _value_options(request, kind, stream, initial_mapping)
    except FileProblem as problem:
        messages.error(request, f"“{upload['name']}” cannot be imported: {problem}")
        return redirect("pipeline:imports")
    except OSError:
        raise Http404("This upload is gone: upload the file again.") from None
    fields = field_names(kind)
    if kind == ImportKind.DEALS:
        stage_names = sorted(set(selectors.visible_stages(request.user).values_list("name", flat=True)))
        fields += [f"{ENTERED_AT_PREFIX}{name}" for name in stage_names]
    fields += [f for f in initial_mapping.values() if f and f not in fields]  # e.g. a stage since renamed
    initial = {f"column_{i}": initial_mapping.get(column, "") for i, column in enumerate(preview.header)}
    if previous:
        initial.update(
            date_order=previous.options.get("date_order") or "",
            create_missing=previous.options.get("create_missing", False),
        )
    form = ImportMappingForm(
        request.POST or None,
        initial=initial,
        header=preview.header,
        fields=fields,
        unknown_values=unknown_values,
        value_choices=value_choices,
    )
    if request.method == "POST" and form.is_valid():
        dry_run = request.POST.get("action") != "import"
        options = ImportOptions(
            date_order=form.cleaned_data["date_order"] or None,
            create_missing=form.cleaned_data["create_missing"],
            value_map=form.value_map(),
        )
        job = start_job_from_stored_file(
            actor=request.user,
            kind=kind,
            stored_name=upload["file"],
            original_name=upload["name"],
            mapping=form.mapping(),
            options=options,
            dry_run=dry_run,
            # A check of a small file answers at once; an import runs on a worker, with a progress bar.
            inline=dry_run and default_storage.size(upload["file"]) <= settings.IMPORT_INLINE_MAX_SIZE,
        )
        return redirect("pipeline:import_job", pk=job.pk)
    context = {
        "form": form,
        "upload": upload,
        "token": token,
        "kind_label": ImportKind(kind).label,
        "preview": preview,
        "previous": previous,
        "columns": [
            (field, [row[i][:40] for row in preview.rows if i < len(row) and row[i]])
            for i, field in enumerate(form.column_fields())
        ],
    }
    return render(request, "pipeline/import_mapping.html", context)


def _job_context(request: HttpRequest, job: ImportJob) -> dict:
    finished = job.status in (ImportStatus.SUCCEEDED, ImportStatus.FAILED)
    percent = 100 if finished else (job.processed_rows * 100 // job.total_rows if job.total_rows else 0)
    token = ""
    if job.file and job.created_by_id == request.user.pk:
        token = _upload_token(request, stored_name=job.file.name, kind=job.kind, original_name=job.original_name)
    return {
        "job": job,
        "finished": finished,
        # Every row is checked and the import now writes them all in one transaction, most of a large import's time.
        "writing": job.status == ImportStatus.RUNNING
        and not job.dry_run
        and job.total_rows > 0
        and job.processed_rows >= job.total_rows,
        "percent": min(percent, 100),
        "errors": (job.errors or [])[:REPORT_ROWS_SHOWN],
        "token": token,
        "upload_form": ImportUploadForm(initial={"kind": job.kind}),
    }


@login_required
@require_GET
def import_job(request: HttpRequest, pk: int) -> HttpResponse:
    """One import or check: its progress while it runs, then its summary and per-row report."""
    job = _visible_job(request, pk)
    return render(request, "pipeline/import_job.html", _job_context(request, job))


@login_required
@require_GET
def import_job_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The progress bar, polled by htmx; once the job is done the page reloads to show the result."""
    job = _visible_job(request, pk)
    context = _job_context(request, job)
    response = render(request, "pipeline/partials/import_progress.html", context)
    if context["finished"]:
        response["HX-Refresh"] = "true"
    return response


@login_required
@require_POST
def import_job_run(request: HttpRequest, pk: int) -> HttpResponse:
    """Import for real what a successful check looked at: the same file, mapping and options, on a worker."""
    job = _visible_job(request, pk)
    if job.created_by_id != request.user.pk or not job.dry_run or job.status != ImportStatus.SUCCEEDED:
        messages.error(request, "Only a successful check of your own can be imported.")
        return redirect("pipeline:import_job", pk=job.pk)
    run = start_job_from_stored_file(
        actor=request.user,
        kind=job.kind,
        stored_name=job.file.name,
        original_name=job.original_name,
        mapping=job.mapping,
        options=ImportOptions.from_json(job.options),
        dry_run=False,
        inline=False,
    )
    return redirect("pipeline:import_job", pk=run.pk)


@login_required
@require_GET
def import_job_report(request: HttpRequest, pk: int) -> HttpResponse:
    """The job's per-row report as a CSV download."""
    return report_csv_response(_visible_job(request, pk))
