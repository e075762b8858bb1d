"""Moving a deal to another stage (from the board or the deal page) through `services.move_deal`: a dialog asks for
the fields the target stage still needs or for a lost reason; the board's changed columns and card are drawn again."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from config.exceptions import StaleVersion
from config.forms import add_service_errors
from pipeline import selectors, services
from pipeline.forms import BoardFilterForm, MoveForm, StageEntryForm
from pipeline.models import REQUIRABLE_DEAL_FIELDS, Deal, Stage, StageKind
from pipeline.views.deals import redraw_deal_page
from pipeline.views.responses import STALE_MESSAGE, first_error, is_htmx, next_url, toast, trigger


@login_required
@require_POST
def deal_move(request: HttpRequest, pk: int) -> HttpResponse:
    """Move a deal to a stage via `services.move_deal`; ask for the target stage's missing fields or a lost reason."""
    deal = get_object_or_404(selectors.editable_deals(request.user).select_related("pipeline", "stage"), pk=pk)
    form = MoveForm(request.POST, deal=deal)
    if not form.is_valid():
        return _move_failed(request, deal, first_error(form))
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
    if not is_htmx(request):
        messages.success(request, message)
        return redirect(next_url(request, reverse("pipeline:board_pipeline", args=[deal.pipeline_id])))
    if request.POST.get("next") and request.POST.get("redraw"):
        # From the deal page's header: the page is drawn again in place, carrying the new version everywhere.
        return redraw_deal_page(request, deal.pk, message)
    if request.POST.get("next"):
        # From the deal page: everything on it (path, history, status) changed, so it is drawn again.
        messages.success(request, message)
        response = HttpResponse()
        response["HX-Redirect"] = next_url(request, reverse("pipeline:deal", args=[deal.pk]))
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
    trigger(response, "crm:moved", {"deal": deal.pk, "stage": deal.stage_id})
    return response


def _move_failed(request: HttpRequest, deal: Deal, message: str, *, refresh: bool = False) -> HttpResponse:
    if not is_htmx(request):
        messages.error(request, message)
        return redirect(next_url(request, reverse("pipeline:deal", args=[deal.pk])))
    if request.POST.get("next") and request.POST.get("redraw"):
        # From the deal page's header: drawn again in place on the latest version, with the message.
        return redraw_deal_page(request, deal.pk, message, "error")
    if request.POST.get("next"):
        # From the deal page: draw it again, with the latest version and the message.
        messages.error(request, message)
        response = HttpResponse()
        response["HX-Redirect"] = next_url(request, reverse("pipeline:deal", args=[deal.pk]))
        return response
    body = toast(request, message, "error")
    card = selectors.board_card(user=request.user, deal_id=deal.pk) if refresh else None
    if card is not None and card.status == StageKind.OPEN:
        context = {"card": card, "stages": list(deal.pipeline.stages.order_by("order")), "now": timezone.now()}
        body += render_to_string("pipeline/partials/card.html", {**context, "oob": True}, request=request)
    elif refresh:
        # Someone else closed the deal (or it left the user's sight): it no longer belongs on the board.
        body += format_html('<div id="deal-{}" hx-swap-oob="delete"></div>', deal.pk)
    response = HttpResponse(body)
    response["HX-Reswap"] = "none"
    trigger(response, "crm:move-failed", {"deal": deal.pk})
    return response


def _move_dialog(
    request: HttpRequest, deal: Deal, stage: Stage, version: int | None, entry: StageEntryForm
) -> HttpResponse:
    context = {"deal": deal, "stage": stage, "version": version, "form": entry, "next": request.POST.get("next", "")}
    context["redraw"] = request.POST.get("redraw", "")
    if not is_htmx(request):
        return render(request, "pipeline/deal_move.html", context)
    response = render(request, "pipeline/partials/move_dialog.html", context)
    response["HX-Retarget"] = "#move-dialog-body"
    response["HX-Reswap"] = "innerHTML"
    trigger(response, "crm:needs-input", {"deal": deal.pk}, after_swap=True)
    return response
