"""Role checks for the browser pages of every app (the API checks roles with the permission classes of `config.api`)."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse


def admin_required(view):
    """Logged-in admins only; anyone else gets 403."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_admin:
            raise PermissionDenied("Only admins can change the settings.")
        return view(request, *args, **kwargs)

    return wrapper
