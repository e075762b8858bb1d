"""CSV export over HTTP: `GET /api/v1/<records>/export/` on the deals, leads, organizations, contacts and activities
viewsets (and `deals/export-history/` for stage changes), streaming `pipeline.exporting.export_csv`.

Each export takes the same filters and search as its list, applied to the rows the user may see; columns are the
ones the import reads, so a file exported here imports back.
"""

from collections.abc import Callable

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.decorators import action
from rest_framework.renderers import BaseRenderer, JSONRenderer

from pipeline.exporting import export_csv


class CSVRenderer(BaseRenderer):
    """Lets a client ask for `Accept: text/csv` (or `?format=csv`). The views answer with the CSV file themselves;
    what reaches this renderer is an error, which is written as JSON, as the schema documents every error."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        if response is not None:
            response["Content-Type"] = "application/json"
        return JSONRenderer().render(data)


def csv_download(
    *, kind: str, user, narrow: Callable[[QuerySet], QuerySet], filename: str, **columns
) -> StreamingHttpResponse:
    """A streamed CSV attachment of the `kind` records `user` may see, narrowed by `narrow` (`columns`: the
    `columns`, `lookups` and `ordering` of `export_csv`, when not the import's)."""
    response = StreamingHttpResponse(
        export_csv(kind=kind, user=user, narrow=narrow, **columns), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class ExportSchema(AutoSchema):
    """Documents the list's filters on an export, which drf-spectacular would leave out of a non-list operation."""

    def get_filter_backends(self):
        return getattr(self.view, "filter_backends", [])


def export_action(description: str, **kwargs):
    """The `@action` of a list export: GET, the list's filters and search (no pagination), a CSV answer."""

    def decorate(method):
        method = action(
            detail=False,
            methods=["get"],
            pagination_class=None,
            renderer_classes=[JSONRenderer, CSVRenderer],
            schema=ExportSchema(),
            **kwargs,
        )(method)
        return extend_schema(
            description=description,
            responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The CSV file.")},
        )(method)

    return decorate
