"""The kanban board (/board/): a column per open stage with its totals and first cards, the next cards as a column
scrolls, and the filters by text, owner and team."""

from urllib.parse import quote

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from pipeline import selectors
from pipeline.forms import BoardFilterForm
from pipeline.models import Stage, StageKind
from pipeline.views.responses import is_htmx, sees_others


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
