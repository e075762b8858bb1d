"""The `imports` resource (SPEC §4): upload a CSV file with its column mapping, dry run or import, follow the job's
progress, read the per-row report (JSON pages or a CSV download), and preview a file to get the suggested mapping.

A file of at most `IMPORT_INLINE_MAX_SIZE` bytes is imported within the request (201, the finished job); a larger
one runs on a Celery worker (202, the pending job: poll `GET /imports/{id}/`). Uploads above
`IMPORT_MAX_FILE_SIZE` are refused with 413. A job is visible to the user who started it, and to admins; the import
runs as that user, so it writes only what they may write.
"""

import io
import json

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from config.api import RequestTooLarge, VisibleViewSet
from config.rest import OrderingFilter
from pipeline import selectors
from pipeline.api.exports import CSVRenderer
from pipeline.importing import FileProblem, ImportOptions, RowError, read_header, write_report_csv
from pipeline.importing.fields import is_known_field
from pipeline.importing.jobs import field_names, preview_file, start_import_job
from pipeline.importing.reading import encoding_problem
from pipeline.importing.values import DATE_ORDERS
from pipeline.models import ImportJob, ImportKind, ImportStatus

# --- Serializers --------------------------------------------------------------------------------------------------


@extend_schema_field({"type": "string", "description": "A JSON object, as text (this is a multipart form field)."})
class JSONObjectField(serializers.CharField):
    """A JSON object sent as a form field's text; `value_depth` 1: {str: str}, 2: {str: {str: str}}."""

    def __init__(self, *, value_depth: int = 1, **kwargs):
        self.value_depth = value_depth
        super().__init__(required=False, allow_blank=True, trim_whitespace=True, **kwargs)

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            raise serializers.ValidationError("Not valid JSON.") from None
        if not self._is_string_map(value, self.value_depth):
            shape = '{"CSV column": "field"}' if self.value_depth == 1 else '{"field": {"their value": "ours"}}'
            raise serializers.ValidationError(f"Expected a JSON object like {shape}.")
        return value

    def to_representation(self, value):
        return json.dumps(value)

    @classmethod
    def _is_string_map(cls, value, depth: int) -> bool:
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            return False
        if depth == 1:
            return all(isinstance(item, str) for item in value.values())
        return all(cls._is_string_map(item, depth - 1) for item in value.values())


class ImportCreateSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The CSV file (UTF-8 with or without BOM, or Windows-1252/Latin-1).")
    kind = serializers.ChoiceField(choices=ImportKind.choices)
    mapping = JSONObjectField(
        help_text='CSV column → field, e.g. `{"Sales Agent": "owner", "Notes": ""}` (a column mapped to "" is '
        "ignored). This is the whole mapping: columns it leaves out are ignored. Omitted or empty: the suggested "
        "mapping (see `imports/preview/`)."
    )
    value_map = JSONObjectField(
        value_depth=2,
        help_text='Per field, the file\'s values → ours, e.g. `{"stage": {"Engaging": "Qualification"}}`.',
    )
    date_order = serializers.ChoiceField(
        choices=DATE_ORDERS,
        required=False,
        allow_blank=True,
        help_text="How to read dates like 03/04/2026; without it such dates are refused rather than guessed.",
    )
    create_missing = serializers.BooleanField(
        default=False,
        help_text="Create unknown organizations, contacts and lost reasons (and, for admins, owners as inactive "
        "users).",
    )
    encoding = serializers.CharField(
        required=False, allow_blank=True, max_length=40, help_text="The file's encoding; detected when omitted."
    )
    dry_run = serializers.BooleanField(default=False, help_text="Check every row and report; write nothing.")

    def validate_encoding(self, value: str) -> str:
        problem = encoding_problem(value) if value else None
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate(self, attrs: dict) -> dict:
        kind, mapping = attrs["kind"], attrs.get("mapping") or {}
        problems = [
            f"“{field}” is not a field of {kind} imports."
            for field in mapping.values()
            if field and not is_known_field(kind, field)
        ]
        mapped = [field for field in mapping.values() if field]
        problems += [
            f"Two columns are mapped to “{field}”." for field in sorted(set(mapped)) if mapped.count(field) > 1
        ]
        if problems:
            raise serializers.ValidationError({"mapping": problems})
        return attrs


class ImportPreviewRequestSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The CSV file to look at; nothing is stored.")
    kind = serializers.ChoiceField(choices=ImportKind.choices)
    encoding = serializers.CharField(required=False, allow_blank=True, max_length=40)

    validate_encoding = ImportCreateSerializer.validate_encoding


class ImportPreviewSerializer(serializers.Serializer):
    header = serializers.ListField(child=serializers.CharField())
    encoding = serializers.CharField(help_text="The encoding detected (or given).")
    delimiter = serializers.CharField()
    estimated_rows = serializers.IntegerField(help_text="Lines after the header (a quoted cell may span lines).")
    rows = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField()), help_text="The first few rows."
    )
    suggested_mapping = serializers.DictField(child=serializers.CharField(), help_text="CSV column → field.")
    fields = serializers.ListField(
        child=serializers.CharField(),
        help_text="The fields of this kind (deals also take `entered_at:<stage name>`).",
    )


class ImportJobSerializer(serializers.ModelSerializer):
    percent = serializers.SerializerMethodField(help_text="Rows checked so far, in percent of the estimated rows.")
    created_by = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = ImportJob
        fields = [
            "id",
            "kind",
            "status",
            "dry_run",
            "original_name",
            "mapping",
            "options",
            "total_rows",
            "processed_rows",
            "percent",
            "created_count",
            "updated_count",
            "error_count",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_percent(self, job: ImportJob) -> int:
        if job.status in (ImportStatus.SUCCEEDED, ImportStatus.FAILED):
            return 100
        if not job.total_rows:
            return 0
        return min(100, job.processed_rows * 100 // job.total_rows)


class RowErrorSerializer(serializers.Serializer):
    row = serializers.IntegerField(help_text="As a spreadsheet numbers it: 1 is the header, 0 the whole file.")
    column = serializers.CharField()
    value = serializers.CharField()
    message = serializers.CharField()


# --- Views --------------------------------------------------------------------------------------------------------


def refuse_oversized_upload(request) -> None:
    """413 before the body is read when the request announces more than `IMPORT_MAX_FILE_SIZE` (plus the form)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.IMPORT_MAX_FILE_SIZE + 64 * 1024:
        raise RequestTooLarge(_too_large())


def _too_large() -> str:
    return f"The file is larger than the {settings.IMPORT_MAX_FILE_SIZE:,} bytes an import accepts."


class ImportJobViewSet(VisibleViewSet):
    """CSV imports: yours (admins: everyone's), newest first."""

    model = ImportJob
    serializer_class = ImportJobSerializer
    parser_classes = [MultiPartParser]
    filter_backends = [OrderingFilter]
    ordering_fields = ["created_at", "id"]

    def visible_queryset(self):
        return selectors.visible_import_jobs(self.request.user)

    def get_serializer_class(self):
        return {
            "create": ImportCreateSerializer,
            "preview": ImportPreviewRequestSerializer,
            "report": RowErrorSerializer,
        }.get(self.action, ImportJobSerializer)

    def _validated_upload(self) -> dict:
        refuse_oversized_upload(self.request)
        data = self.validated_data()
        if data["file"].size > settings.IMPORT_MAX_FILE_SIZE:
            raise RequestTooLarge(_too_large())
        return data

    @extend_schema(
        request={"multipart/form-data": ImportCreateSerializer},
        responses={
            201: OpenApiResponse(ImportJobSerializer, description="A small file, already imported (or checked)."),
            202: OpenApiResponse(ImportJobSerializer, description="A large file, queued: poll the job."),
        },
        description=(
            "Upload a CSV file and import it (or, with `dry_run`, only check it). A file without a readable header, "
            "or a mapping naming a column the file lacks, is a 400. Every row is checked first; if any is refused "
            "nothing is written, and the job's report lists each problem. Files up to "
            "`IMPORT_INLINE_MAX_SIZE` bytes run within the request (201), larger ones on a worker (202)."
        ),
    )
    def create(self, request):
        data = self._validated_upload()
        try:
            header = read_header(data["file"], encoding=data.get("encoding") or None)
        except FileProblem as problem:
            raise serializers.ValidationError({"file": [str(problem)]}) from problem
        missing = [column for column in data.get("mapping") or {} if column not in header]
        if missing:
            names = ", ".join(f"“{column}”" for column in missing)
            raise serializers.ValidationError({"mapping": [f"The file has no column {names}."]})
        options = ImportOptions(
            date_order=data.get("date_order") or None,
            create_missing=data["create_missing"],
            value_map=data.get("value_map") or {},
            encoding=data.get("encoding") or None,
        )
        job = start_import_job(
            actor=request.user,
            kind=data["kind"],
            upload=data["file"],
            mapping=data.get("mapping") or None,
            options=options,
            dry_run=data["dry_run"],
        )
        code = status.HTTP_202_ACCEPTED if job.status == ImportStatus.PENDING else status.HTTP_201_CREATED
        return Response(ImportJobSerializer(job).data, status=code)

    @extend_schema(
        request={"multipart/form-data": ImportPreviewRequestSerializer},
        responses={200: ImportPreviewSerializer},
        description=(
            "Look at a CSV file before importing it: its header, detected encoding and delimiter, first rows, and the "
            "column mapping suggested for the kind. Nothing is stored; a file that cannot be read is a 400 on `file`."
        ),
    )
    @action(detail=False, methods=["post"], filter_backends=[])
    def preview(self, request):
        data = self._validated_upload()
        try:
            preview = preview_file(kind=data["kind"], stream=data["file"], encoding=data.get("encoding") or None)
        except FileProblem as problem:
            raise serializers.ValidationError({"file": [str(problem)]}) from problem
        body = {
            "header": preview.header,
            "encoding": preview.encoding,
            "delimiter": preview.delimiter,
            "estimated_rows": preview.estimated_rows,
            "rows": preview.rows,
            "suggested_mapping": preview.suggested_mapping,
            "fields": field_names(data["kind"]),
        }
        return Response(ImportPreviewSerializer(body).data)

    @extend_schema(
        operation_id="imports_report_list",
        responses=RowErrorSerializer(many=True),
        description=(
            "The job's refused rows (row, column, value, message), in row order; the first 1,000 problems are kept "
            "(`error_count` says how many there were)."
        ),
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def report(self, request, pk=None):
        errors = self.get_object().errors or []
        page = self.paginate_queryset(errors)
        return self.get_paginated_response(RowErrorSerializer(page, many=True).data)

    @extend_schema(
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="row,column,value,message")},
        description="The job's report as a CSV download.",
    )
    @action(
        detail=True,
        methods=["get"],
        url_path="report/csv",
        filter_backends=[],
        pagination_class=None,
        renderer_classes=[JSONRenderer, CSVRenderer],
    )
    def report_csv(self, request, pk=None):
        job = self.get_object()
        return report_csv_response(job)


def report_csv_response(job: ImportJob) -> HttpResponse:
    """The job's report (its stored problems) as a CSV attachment; also served by the upload page."""
    out = io.StringIO()
    write_report_csv([RowError(**error) for error in job.errors or []], out)
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-report.csv"'
    return response
