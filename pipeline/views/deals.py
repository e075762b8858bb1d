"""A new deal, and the deal page (/deals/<id>/): its fields edited in place, the stage path, its activities and its
history."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.formats import date_format
from django.views.decorators.http import require_GET, require_POST

from config.exceptions import StaleVersion
from config.forms import add_service_errors
from pipeline import selectors, services
from pipeline.forms import DEAL_FORM_FIELDS, ActivityForm, DealCreateForm, DealFieldsForm, as_input, same_value
from pipeline.models import Deal, ForecastCategory
from pipeline.templatetags.crm import money
from pipeline.views.activities import create_activity
from pipeline.views.responses import STALE_MESSAGE, is_htmx, toast, trigger


@login_required
def deal_create(request: HttpRequest, pipeline_id: int) -> HttpResponse:
    """A new deal in a pipeline, through `services.create_deal`; then its page."""
    pipeline = get_object_or_404(selectors.visible_pipelines(request.user), pk=pipeline_id)
    # ?stage= comes from a board column's "+" followed without JS: that stage is chosen already.
    initial = {"stage": request.GET["stage"]} if request.GET.get("stage", "").isdigit() else {}
    form = DealCreateForm(request.POST or None, user=request.user, pipeline=pipeline, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            deal = services.create_deal(actor=request.user, pipeline=pipeline, **form.service_arguments())
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Created “{deal.title}”.")
            return redirect("pipeline:deal", pk=deal.pk)
    return render(request, "pipeline/deal_create.html", {"form": form, "pipeline": pipeline})


# The newest field changes the page shows; the API (`/api/v1/deals/{id}/changes/`) pages through all of them.
CHANGES_SHOWN = 25


def _change_lines(changes: list[selectors.FieldChange]) -> list[dict]:
    """The deal's field changes as sentences a person reads: "Amount $12,500 → $15,000", by whom, when.

    Stages and owners by name, amounts in their currency, dates spelled out, categories by label.
    """
    categories = dict(ForecastCategory.choices)

    def words(change: selectors.FieldChange, value, state) -> str:
        if value is None:
            return "none"
        if change.field == "stage":
            return state.stage.name
        if change.field == "owner":
            return str(state.owner)
        if change.field == "amount":
            return money(value, state.currency)
        if change.field == "expected_close_date":
            return date_format(value, "j M Y")
        if change.field == "forecast_category":
            return categories.get(value, value)
        return str(value)

    return [
        {
            "label": CHANGE_LABELS[change.field],
            "old": words(change, change.old, change.before),
            "new": words(change, change.new, change.after),
            "by": change.changed_by.get_short_name() or change.changed_by.username if change.changed_by else None,
            "at": change.at,
        }
        for change in changes
    ]


CHANGE_LABELS = {
    "stage": "Stage",
    "owner": "Owner",
    "amount": "Amount",
    "currency": "Currency",
    "expected_close_date": "Close date",
    "forecast_category": "Forecast category",
}


def _deal_context(request: HttpRequest, deal: Deal) -> dict:
    history = list(selectors.deal_history(deal=deal))
    can_edit = selectors.editable_deals(request.user).filter(pk=deal.pk).exists()
    stages = list(deal.pipeline.stages.order_by("order"))
    return {
        "deal": deal,
        "history": history,
        "path": selectors.stage_path(deal=deal, history=history),
        "stages": stages,
        "changes": _change_lines(selectors.deal_changes(deal=deal)[:CHANGES_SHOWN]),
        "pushes": selectors.deal_pushes([deal.pk]).get(deal.pk, selectors.Pushes()),
        "activities": list(selectors.deal_activities(deal=deal)),
        "activity_form": ActivityForm(),
        "can_edit": can_edit,
        "staleness": selectors.staleness(deal),
        "from_lead": selectors.converted_lead_of(user=request.user, deal=deal),
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
            return _fields_conflict(request, pk, form)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            deal = _editable_deal(request, pk)
            if not is_htmx(request):
                messages.success(request, "Saved.")
                return redirect("pipeline:deal", pk=deal.pk)
            return _fields_saved(request, deal)
    return render(request, "pipeline/partials/deal_fields_form.html", {"deal": deal, "form": form}, status=200)


def _fields_saved(request: HttpRequest, deal: Deal) -> HttpResponse:
    """The saved fields, and the page's header drawn again out of band: its Move form carries the new version and
    its figures the new values, so the next move is not refused as someone else's change."""
    response = render(request, "pipeline/partials/deal_fields.html", {"deal": deal, "can_edit": True})
    head = {
        "deal": deal,
        "can_edit": True,
        "stages": list(deal.pipeline.stages.order_by("order")),
        "staleness": selectors.staleness(deal),
        "from_lead": selectors.converted_lead_of(user=request.user, deal=deal),
        "oob": True,
    }
    response.write(render_to_string("pipeline/partials/deal_head.html", head, request=request))
    response.write(toast(request, "Saved."))
    return response


def _fields_conflict(request: HttpRequest, pk: int, form: DealFieldsForm) -> HttpResponse:
    """Someone else saved the deal since the user opened the form, and nothing was written: the form comes back on
    the latest version with what the user typed, each field both changed saying at the field what it holds now, a
    toast saying why; saving again applies the user's values."""
    deal = _editable_deal(request, pk)
    form, conflicts = form.rebased(deal)
    for name in conflicts:
        form.add_error(
            name,
            f"Changed meanwhile by someone else to “{_display(deal, name)}”. "
            "Yours is kept here: Save applies it, Cancel keeps theirs.",
        )
    message = STALE_MESSAGE.format(title=deal.title) + " Your changes are not saved yet."
    response = render(
        request, "pipeline/partials/deal_fields_form.html", {"deal": deal, "form": form, "notice": message}
    )
    response.write(toast(request, message, "error"))
    return response


def redraw_deal_page(request: HttpRequest, pk: int, message: str, level: str = "success") -> HttpResponse:
    """The deal page's body drawn again in place after a move from its header (status, path, history, fields),
    so every form on it carries the new version; a toast says what happened and the move dialog closes."""
    response = render(request, "pipeline/partials/deal_page.html", _deal_context(request, _visible_deal(request, pk)))
    response.write(toast(request, message, level))
    response["HX-Retarget"] = "#deal-page"
    response["HX-Reswap"] = "outerHTML"
    trigger(response, "crm:deal-redrawn", {"deal": pk})
    return response


def _one_field_form(request: HttpRequest, deal: Deal, name: str, value: str | None, version: str | None):
    """The whole fields form, bound to the deal's current values with one field (`name`) as the user typed it, so
    the form's validation and the service see exactly one change."""
    data = {key: as_input(current) for key, current in DealFieldsForm.initial_for(deal).items()}
    if value is not None:
        data[name] = value
    data["version"] = version if version is not None else str(deal.version)
    return DealFieldsForm(data, user=request.user)


def _field_form_response(request: HttpRequest, deal: Deal, name: str, form, *, notice: str = "", current: str = ""):
    # The value the user is shown, sent back with the save so a change to another field is told from one to this.
    seen = as_input(DealFieldsForm.initial_for(deal)[name])
    context = {"deal": deal, "name": name, "field": form[name], "seen": seen, "notice": notice, "current": current}
    status = 200 if is_htmx(request) or not form.errors else 400
    return render(request, "pipeline/partials/deal_field_form.html", context, status=status)


@login_required
def deal_field(request: HttpRequest, pk: int, name: str) -> HttpResponse:
    """One of the deal's fields, edited in place: shown (GET ?display=1), as a one-field form (GET), or saved through
    `services.update_deal` with the deal's version (POST), answering the field shown again and the page's header out
    of band. A stale version keeps what the user typed beside the current value, ready to apply again."""
    if name not in DEAL_FORM_FIELDS:
        raise Http404("No such field.")
    if request.method == "GET" and request.GET.get("display"):
        deal = _visible_deal(request, pk)
        can_edit = selectors.editable_deals(request.user).filter(pk=deal.pk).exists()
        return render(request, "pipeline/partials/deal_field.html", {"deal": deal, "name": name, "can_edit": can_edit})
    deal = _editable_deal(request, pk)
    if request.method == "GET":
        return _field_form_response(request, deal, name, _one_field_form(request, deal, name, None, None))
    if request.method != "POST":
        return HttpResponse(status=405)
    typed = request.POST.get(name, "")
    form = _one_field_form(request, deal, name, typed, request.POST.get("version"))
    if not form.is_valid():
        return _field_form_response(request, deal, name, form)
    version = form.cleaned_data["version"]
    try:
        try:
            services.update_deal(
                deal=deal, actor=request.user, expected_version=version, **{name: form.cleaned_data[name]}
            )
        except StaleVersion:
            # Someone saved the deal meanwhile. When this field still holds what the user was shown, only other
            # fields changed: applying the user's value overwrites nothing of theirs, so it is no conflict.
            deal = _editable_deal(request, pk)
            seen = request.POST.get(f"seen_{name}")
            if seen is None or not same_value(form.fields[name], DealFieldsForm.initial_for(deal)[name], seen):
                raise
            services.update_deal(
                deal=deal, actor=request.user, expected_version=deal.version, **{name: form.cleaned_data[name]}
            )
    except StaleVersion:
        deal = _editable_deal(request, pk)
        form = _one_field_form(request, deal, name, typed, str(deal.version))
        message = STALE_MESSAGE.format(title=deal.title) + " Your change is not saved yet."
        response = _field_form_response(request, deal, name, form, notice=message, current=_display(deal, name))
        response.write(toast(request, message, "error"))
        return response
    except ValidationError as error:
        add_service_errors(form, error)
        return _field_form_response(request, deal, name, form)
    deal = _editable_deal(request, pk)
    if not is_htmx(request):
        messages.success(request, "Saved.")
        return redirect("pipeline:deal", pk=deal.pk)
    response = render(request, "pipeline/partials/deal_field.html", {"deal": deal, "name": name, "can_edit": True})
    head = {
        "deal": deal,
        "can_edit": True,
        "stages": list(deal.pipeline.stages.order_by("order")),
        "staleness": selectors.staleness(deal),
        "from_lead": selectors.converted_lead_of(user=request.user, deal=deal),
        "oob": True,
    }
    response.write(render_to_string("pipeline/partials/deal_head.html", head, request=request))
    response.write(toast(request, "Saved."))
    return response


def _display(deal: Deal, name: str) -> str:
    """The deal's current value of a field, as the page shows it."""
    value = getattr(deal, name)
    if value in (None, ""):
        return "—"
    if name == "amount" or name == "budget":
        return money(value, deal.currency)
    if hasattr(deal, f"get_{name}_display"):
        return getattr(deal, f"get_{name}_display")()
    if hasattr(value, "strftime"):
        return date_format(value)
    return str(value)


@login_required
@require_POST
def deal_activity_create(request: HttpRequest, pk: int) -> HttpResponse:
    """Log an activity on a deal, or plan the next step (with a due time)."""
    return create_activity(request, _editable_deal(request, pk))
