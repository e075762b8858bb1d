"""The answer to an exception no view handled (Django's `handler500`): a database that cannot be reached is a 503
that says so, for pages and for the API alike, instead of a generic 500.

Django calls the handler for an exception raised anywhere in the request, middleware included (a session read or
save while PostgreSQL restarts fails there, before any view), which is why this lives here and not in DRF's
exception handler alone.
"""

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.views import defaults

from config.api import DATABASE_RETRY_AFTER_SECONDS, DatabaseUnavailable


def _database_unavailable(exc: BaseException | None) -> bool:
    return isinstance(exc, OperationalError | InterfaceError)


def server_error(request: HttpRequest) -> HttpResponse:
    """503 with Retry-After when the database is away (JSON under /api/, a page elsewhere); otherwise Django's 500."""
    exc = sys.exc_info()[1]
    api = request.path.startswith("/api/")
    if _database_unavailable(exc):
        if api:
            response = JsonResponse(
                {"detail": str(DatabaseUnavailable.default_detail)}, status=DatabaseUnavailable.status_code
            )
        else:
            # Rendered without the request: the base layout reads the signed-in user, which needs the database.
            response = HttpResponse(loader.render_to_string("503.html"), status=503)
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response
    if api:
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return defaults.server_error(request)
