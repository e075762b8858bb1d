"""What the page modules share in answering a request: telling htmx requests from plain ones, toasts and htmx
events, a safe "next" address, a form's first error, and the words for a record someone else changed meanwhile."""

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils.http import url_has_allowed_host_and_scheme

STALE_MESSAGE = (
    "“{title}” was changed by someone else since you loaded it. It now shows the latest version: "
    "check it and try again."
)


def is_htmx(request: HttpRequest) -> bool:
    """Whether htmx sent the request (it then gets a partial, not the whole page)."""
    return request.headers.get("HX-Request") == "true"


def trigger(response: HttpResponse, event: str, detail: dict | None = None, *, after_swap: bool = False) -> None:
    """Add `event` to the htmx events the response fires (after the swap when `after_swap`), keeping the others."""
    header = "HX-Trigger-After-Swap" if after_swap else "HX-Trigger"
    events = json.loads(response.get(header, "{}"))
    events[event] = detail or {}
    response[header] = json.dumps(events)


def toast(request: HttpRequest, message: str, level: str = "success") -> str:
    """An out-of-band toast appended to #toasts by htmx."""
    return render_to_string("pipeline/partials/toast.html", {"message": message, "level": level}, request=request)


def next_url(request: HttpRequest, default: str) -> str:
    """Where to go back to: the request's `next` when it is an address of this site, else `default`."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return default


def first_error(form) -> str:
    """The first error of an invalid form, as one line for a toast or a message."""
    for errors in form.errors.values():
        return " ".join(errors)
    return "Please check your input."


def sees_others(request: HttpRequest) -> bool:
    """Whether owner and team filters help: the user sees other people's records."""
    return request.user.is_admin or request.user.is_manager or settings.REP_VISIBILITY == "team"
