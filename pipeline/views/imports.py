"""The Import page (/imports/): CSV upload and its checks and imports.

Upload (the file is stored once) → mapping page (columns, values, options; the mapping of the user's previous import
of that kind is reused) → "Check" (a dry run: inline for small files) → the job page with its report → "Import"
(a new job on the same file, run by a Celery worker; the page polls its progress) → the result.
"""

from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.files.storage import default_storage
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.models import User
from accounts.selectors import assignable_owners
from pipeline import selectors
from pipeline.api.imports import report_csv_response
from pipeline.forms import ImportMappingForm, ImportUploadForm
from pipeline.importing import FileProblem, ImportOptions
from pipeline.importing.fields import ENTERED_AT_PREFIX
from pipeline.importing.jobs import field_names, preview_file, start_job_from_stored_file, values_in_columns
from pipeline.models import ImportJob, ImportKind, ImportStatus

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
