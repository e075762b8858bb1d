"""The kanban board (/board/): a column per open stage with its totals and first cards, the next cards as a column
scrolls, the filters by text, owner and team, and the quick add of a deal at the top of a column."""

from urllib.parse import quote

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from config.forms import add_service_errors
from pipeline import selectors, services
from pipeline.forms import BoardFilterForm, QuickDealForm
from pipeline.models import Stage, StageKind
from pipeline.views.responses import first_error, is_htmx, sees_others


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
        "sees_others": sees_others(request),
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
    if is_htmx(request) and request.headers.get("HX-Target") == "board":
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
@require_http_methods(["GET", "POST"])
def board_quick_add(request: HttpRequest, pipeline_id: int, stage_id: int) -> HttpResponse:
    """The quick add at the top of a board column: its small form (GET), then a deal created in that stage through
    `services.create_deal` (POST), answered with the card at the top of the column and the column's new totals."""
    pipeline = get_object_or_404(selectors.visible_pipelines(request.user), pk=pipeline_id)
    stage = get_object_or_404(pipeline.stages, pk=stage_id, kind=StageKind.OPEN)
    full_form = f"{reverse('pipeline:deal_create', args=[pipeline.pk])}?stage={stage.pk}"
    if not is_htmx(request) and request.method == "GET":
        return redirect(full_form)  # without JS the "+" is a link to the full form; this is for a typed address
    form = QuickDealForm(
        request.POST if request.method == "POST" else None, user=request.user, auto_id=f"quick-{stage.pk}-%s"
    )
    context = {"form": form, "pipeline": pipeline, "stage": stage, "full_form": full_form}
    if request.method == "GET" or not form.is_valid():
        return _quick_add_form(request, context)
    try:
        deal = services.create_deal(actor=request.user, pipeline=pipeline, stage=stage, **form.service_arguments())
    except ValidationError as error:
        add_service_errors(form, error)
        return _quick_add_form(request, context)
    message = f"Created “{deal.title}” in {stage.name}."
    if not is_htmx(request):
        messages.success(request, message)
        return redirect("pipeline:board_pipeline", pipeline_id=pipeline.pk)
    filter_form = BoardFilterForm(request.POST, user=request.user)
    deals = selectors.board_deals(user=request.user, pipeline=pipeline, **filter_form.filters())
    shown = deals.filter(pk=deal.pk).exists()
    if not shown:
        message += " The board’s filters hide it."
    context = {
        "card": selectors.board_card(user=request.user, deal_id=deal.pk) if shown else None,
        "stage": stage,
        "stages": list(pipeline.stages.order_by("order")),
        "headers": selectors.stage_totals(deals=deals, stages=[stage]),
        "now": timezone.now(),
        "toast": message,
    }
    return render(request, "pipeline/partials/quick_add_done.html", context)


def _quick_add_form(request: HttpRequest, context: dict) -> HttpResponse:
    if not is_htmx(request):
        # A refused quick add sent without JS (no quick form is drawn then): the message says why, the full form asks.
        messages.error(request, first_error(context["form"]))
        return redirect(context["full_form"])
    return render(request, "pipeline/partials/quick_add.html", context)
