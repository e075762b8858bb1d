"""Settings pages for admins, in the app's own look: pipelines and their stages, and lost reasons.

Thin views, like pipeline.views: they read models directly (settings are no one's records, so no visibility rule
applies beyond the admin role) and write through `pipeline.services`, which validates and records the audit trail.
A non-admin gets 403: the pages exist, the user may not use them.
"""

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.decorators import admin_required
from config.forms import add_service_errors
from pipeline import services
from pipeline.models import REQUIRABLE_DEAL_FIELDS, ForecastCategory, LostReason, Pipeline, Stage, StageKind

# --- Forms ----------------------------------------------------------------------------------------------------------


class PipelineCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    open_stages = forms.CharField(
        label="Open stages, one per line",
        widget=forms.Textarea(attrs={"rows": 4}),
        initial="Qualification\nProposal\nNegotiation",
        help_text="A Won and a Lost stage are added after them. Probabilities can be changed afterwards.",
    )
    is_default = forms.BooleanField(label="Make it the default pipeline", required=False)

    def clean_open_stages(self) -> list[str]:
        names = [line.strip() for line in self.cleaned_data["open_stages"].splitlines() if line.strip()]
        if not names:
            raise ValidationError("Name at least one open stage.")
        if len({name.casefold() for name in names}) != len(names):
            raise ValidationError("Give each stage a different name.")
        if any(len(name) > 100 for name in names):
            raise ValidationError("A stage name has at most 100 characters.")
        if {name.casefold() for name in names} & {"won", "lost"}:
            raise ValidationError("Won and Lost are added for you; name only the open stages.")
        return names

    def stages(self) -> list[dict]:
        names = self.cleaned_data["open_stages"]
        step = 100 // (len(names) + 1)
        opened = [{"name": name, "probability": step * (i + 1)} for i, name in enumerate(names)]
        return [
            *opened,
            {"name": "Won", "kind": StageKind.WON, "probability": 100, "forecast_category": ForecastCategory.COMMIT},
            {"name": "Lost", "kind": StageKind.LOST, "probability": 0},
        ]


class PipelineForm(forms.Form):
    name = forms.CharField(max_length=100)


class StageForm(forms.Form):
    name = forms.CharField(max_length=100)
    probability = forms.IntegerField(min_value=0, max_value=100, label="Probability (%)")
    rotting_days = forms.IntegerField(
        min_value=1,
        max_value=32767,
        label="Rotting days",
        help_text="An open deal older than this in the stage is stale.",
    )
    forecast_category = forms.ChoiceField(choices=ForecastCategory.choices, label="Forecast category")
    required_fields = forms.MultipleChoiceField(
        choices=list(REQUIRABLE_DEAL_FIELDS.items()),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Required fields",
        help_text="Deals must have these filled before entering the stage.",
    )


class NewStageForm(StageForm):
    """An open stage added after the pipeline's last open stage."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["rotting_days"].initial = 30
        self.fields["probability"].initial = 50


class LostReasonForm(forms.Form):
    name = forms.CharField(max_length=100)


# --- Pipelines ------------------------------------------------------------------------------------------------------


@admin_required
def pipeline_list(request: HttpRequest) -> HttpResponse:
    form = PipelineCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            pipeline = services.create_pipeline(
                actor=request.user,
                name=form.cleaned_data["name"],
                is_default=form.cleaned_data["is_default"],
                stages=form.stages(),
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Created the pipeline {pipeline}.")
            return redirect("settings:pipeline", pk=pipeline.pk)
    pipelines = Pipeline.objects.annotate(stage_count=models.Count("stages"))
    status = 400 if request.method == "POST" else 200
    context = {"pipelines": pipelines, "form": form, "section": "pipelines"}
    return render(request, "settings/pipelines.html", context, status=status)


def _pipeline_context(pipeline: Pipeline, **forms) -> dict:
    stages = list(pipeline.stages.order_by("order"))
    open_stages = [stage for stage in stages if stage.is_open]
    for index, stage in enumerate(open_stages):
        stage.can_move_up = index > 0
        stage.can_move_down = index < len(open_stages) - 1
        stage.required_labels = [REQUIRABLE_DEAL_FIELDS[name] for name in stage.required_fields]
    return {
        "pipeline": pipeline,
        "stages": stages,
        "rename_form": forms.get("rename_form") or PipelineForm(initial={"name": pipeline.name}),
        "stage_form": forms.get("stage_form") or NewStageForm(),
        "section": "pipelines",
    }


@admin_required
def pipeline_detail(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = get_object_or_404(Pipeline, pk=pk)
    return render(request, "settings/pipeline.html", _pipeline_context(pipeline))


@admin_required
@require_POST
def pipeline_rename(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = get_object_or_404(Pipeline, pk=pk)
    form = PipelineForm(request.POST)
    if form.is_valid():
        try:
            services.update_pipeline(pipeline=pipeline, actor=request.user, name=form.cleaned_data["name"])
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, "Renamed the pipeline.")
            return redirect("settings:pipeline", pk=pk)
    pipeline.refresh_from_db()
    return render(request, "settings/pipeline.html", _pipeline_context(pipeline, rename_form=form), status=400)


@admin_required
@require_POST
def pipeline_make_default(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = get_object_or_404(Pipeline, pk=pk)
    services.update_pipeline(pipeline=pipeline, actor=request.user, is_default=True)
    messages.success(request, f"{pipeline} is now the default pipeline.")
    return redirect("settings:pipeline", pk=pk)


# --- Stages ---------------------------------------------------------------------------------------------------------


@admin_required
@require_POST
def stage_create(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = get_object_or_404(Pipeline, pk=pk)
    form = NewStageForm(request.POST)
    if form.is_valid():
        # After the last open stage: the won and lost stages move one place on.
        last_open = pipeline.stages.filter(kind=StageKind.OPEN).aggregate(last=models.Max("order"))["last"] or 0
        try:
            stage = services.create_stage(
                actor=request.user, pipeline=pipeline, order=last_open + 1, **form.cleaned_data
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Added the stage {stage.name}.")
            return redirect("settings:pipeline", pk=pk)
    return render(request, "settings/pipeline.html", _pipeline_context(pipeline, stage_form=form), status=400)


@admin_required
def stage_edit(request: HttpRequest, pk: int) -> HttpResponse:
    stage = get_object_or_404(Stage.objects.select_related("pipeline"), pk=pk)
    initial = {name: getattr(stage, name) for name in StageForm.base_fields}
    form = StageForm(request.POST or None, initial=initial)
    if stage.kind != StageKind.OPEN:
        form.fields["probability"].disabled = True
    if request.method == "POST" and form.is_valid():
        try:
            services.update_stage(stage=stage, actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Saved the stage {form.cleaned_data['name']}.")
            return redirect("settings:pipeline", pk=stage.pipeline_id)
    status = 400 if request.method == "POST" else 200
    return render(
        request, "settings/stage_edit.html", {"stage": stage, "form": form, "section": "pipelines"}, status=status
    )


def _reorder_open_stages(pipeline: Pipeline, stage_ids: list[int], actor) -> None:
    """Put the pipeline's open stages in the order of `stage_ids`, on the places the open stages hold now.

    Swaps one stage at a time through `services.update_stage` (the order constraint is deferred), so each move is
    in the audit trail; the won and lost stages keep their places.
    """
    with transaction.atomic():
        open_stages = {stage.pk: stage for stage in pipeline.stages.select_for_update().filter(kind=StageKind.OPEN)}
        if sorted(stage_ids) != sorted(open_stages):
            raise ValidationError("The list of stages is out of date: reload the page and try again.")
        orders = {pk: stage.order for pk, stage in open_stages.items()}
        places = sorted(orders.values())
        for place, pk in zip(places, stage_ids, strict=True):
            if orders[pk] == place:
                continue
            occupant = next(other for other, order in orders.items() if order == place)
            services.update_stage(stage=open_stages[pk], actor=actor, order=place)
            orders[occupant], orders[pk] = orders[pk], place


@admin_required
@require_POST
def stage_reorder(request: HttpRequest, pk: int) -> HttpResponse:
    """The open stages in a new order (`order`: their ids, comma-separated), as dragged on the settings page."""
    pipeline = get_object_or_404(Pipeline, pk=pk)
    try:
        stage_ids = [int(value) for value in request.POST.get("order", "").split(",") if value.strip()]
        _reorder_open_stages(pipeline, stage_ids, request.user)
    except (ValueError, ValidationError) as error:
        message = error.messages[0] if isinstance(error, ValidationError) else "The new order could not be read."
        return HttpResponseBadRequest(message)
    if request.headers.get("HX-Request") == "true":
        return render(request, "settings/partials/stage_list.html", _pipeline_context(pipeline))
    return redirect("settings:pipeline", pk=pk)


@admin_required
@require_POST
def stage_move(request: HttpRequest, pk: int) -> HttpResponse:
    """Move an open stage one place up or down among the open stages (the buttons beside each stage)."""
    stage = get_object_or_404(Stage.objects.select_related("pipeline"), pk=pk, kind=StageKind.OPEN)
    direction = request.POST.get("direction")
    if direction not in ("up", "down"):
        return HttpResponseBadRequest("Move a stage up or down.")
    open_stages = list(stage.pipeline.stages.filter(kind=StageKind.OPEN).order_by("order").values_list("pk", flat=True))
    index = open_stages.index(stage.pk)
    neighbour = index - 1 if direction == "up" else index + 1
    if 0 <= neighbour < len(open_stages):
        open_stages[index], open_stages[neighbour] = open_stages[neighbour], open_stages[index]
        _reorder_open_stages(stage.pipeline, open_stages, request.user)
        messages.success(request, f"Moved {stage.name} {direction}.")
    response = redirect("settings:pipeline", pk=stage.pipeline_id)
    response["Location"] += f"#stage-{stage.pk}"
    return response


# --- Lost reasons ---------------------------------------------------------------------------------------------------


@admin_required
def lost_reason_list(request: HttpRequest) -> HttpResponse:
    form = LostReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            reason = services.create_lost_reason(actor=request.user, name=form.cleaned_data["name"])
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Added the lost reason {reason}.")
            return redirect("settings:lost_reasons")
    status = 400 if request.method == "POST" else 200
    context = {"reasons": LostReason.objects.order_by("-is_active", "name"), "form": form, "section": "lost_reasons"}
    return render(request, "settings/lost_reasons.html", context, status=status)


@admin_required
def lost_reason_edit(request: HttpRequest, pk: int) -> HttpResponse:
    reason = get_object_or_404(LostReason, pk=pk)
    form = LostReasonForm(request.POST or None, initial={"name": reason.name})
    if request.method == "POST" and form.is_valid():
        try:
            services.update_lost_reason(lost_reason=reason, actor=request.user, name=form.cleaned_data["name"])
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, "Renamed the lost reason.")
            return redirect("settings:lost_reasons")
    status = 400 if request.method == "POST" else 200
    context = {"reason": reason, "form": form, "section": "lost_reasons"}
    return render(request, "settings/lost_reason_edit.html", context, status=status)


@admin_required
@require_POST
def lost_reason_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    """Retire an active reason (new losses cannot use it) or bring a retired one back."""
    reason = get_object_or_404(LostReason, pk=pk)
    services.update_lost_reason(lost_reason=reason, actor=request.user, is_active=not reason.is_active)
    messages.success(request, f"{'Reactivated' if reason.is_active else 'Retired'} the lost reason {reason}.")
    return redirect("settings:lost_reasons")
