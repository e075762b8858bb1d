"""`Idempotency-Key` on every API POST and PATCH (SPEC §4, Stripe's contract): the first answer is kept per user and
key for `IDEMPOTENCY_KEY_HOURS` and replayed to a retry with `Idempotent-Replayed: true`; the same key with another
request is a 422, and a key whose first request is still running a 409.

A middleware, so that every write of the API has it — creates, moves, conversions, imports, batches — without a line
in their views. The request and the keeping of its answer are one transaction: a request that dies before it
answers leaves no write behind, and its claim is taken over by the next retry (`IDEMPOTENCY_ABANDONED_SECONDS`).
"""

import hashlib

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import authentication

from accounts import services
from accounts.models import User

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
METHODS = {"POST", "PATCH"}
# The headers of an answer that belong to it and are replayed with it.
KEPT_HEADERS = ("Content-Type", "ETag", "Location")
# Answers a retry may get differently, so they are not kept: the server failed, or the request raced another.
TRANSIENT_STATUSES = {409, 429}


class IdempotencyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        key = request.headers.get(HEADER)
        if key is None or request.method not in METHODS or not request.path.startswith("/api/"):
            return self.get_response(request)
        if not key.strip() or len(key) > MAX_KEY_LENGTH:
            return JsonResponse({HEADER: [f"Send 1 to {MAX_KEY_LENGTH} characters."]}, status=400)
        user = _requesting_user(request)
        if user is None:  # no valid credentials: the view answers 401, and nothing is kept
            return self.get_response(request)
        claim = services.claim_idempotency_key(user=user, key=key, fingerprint=_fingerprint(request))
        if claim.outcome == "mismatch":
            return JsonResponse(
                {"detail": "This Idempotency-Key was used with another request: use a new key for a new request."},
                status=422,
            )
        if claim.outcome == "in_flight":
            response = JsonResponse(
                {"detail": "A request with this Idempotency-Key is still running: retry once it has answered."},
                status=409,
            )
            response["Retry-After"] = "1"
            return response
        if claim.outcome == "replay":
            return _replayed(claim.record)
        return self._run_and_keep(request, claim.record)

    def _run_and_keep(self, request: HttpRequest, record) -> HttpResponse:
        try:
            with transaction.atomic():
                response = self.get_response(request)
                if response.status_code >= 500:
                    transaction.set_rollback(True)  # a failed request leaves no half write behind
                elif _keepable(response):
                    services.record_idempotent_answer(
                        record=record,
                        status_code=response.status_code,
                        headers={name: response[name] for name in KEPT_HEADERS if name in response},
                        body=response.content,
                    )
        except BaseException:
            services.release_idempotency_key(record=record)
            raise
        if not _keepable(response):
            services.release_idempotency_key(record=record)
        return response


def _keepable(response: HttpResponse) -> bool:
    return not response.streaming and response.status_code < 500 and response.status_code not in TRANSIENT_STATUSES


def _replayed(record) -> HttpResponse:
    response = HttpResponse(bytes(record.body), status=record.status_code)
    for name, value in record.headers.items():
        response[name] = value
    response["Idempotent-Replayed"] = "true"
    return response


def _requesting_user(request: HttpRequest) -> User | None:
    """The user a bearer token or the session names, or None. A bad token is left to the view, which answers it
    (and counts it against the address) as for any request."""
    header = authentication.get_authorization_header(request).split()
    if header and header[0].lower() == b"bearer":
        token = services.authenticate_api_token(header[1].decode("ascii", "replace")) if len(header) == 2 else None
        return token.user if token is not None else None
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def _fingerprint(request: HttpRequest) -> str:
    """SHA-256 over what makes the request the request: method, path, query string and body (for an upload, its
    fields and the files' names and contents)."""
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.META.get("QUERY_STRING", "")):
        digest.update(part.encode() + b"\0")
    if request.content_type == "multipart/form-data":
        # Parsed here with Django's upload handlers (DRF reuses what they parsed): no upload is held in memory whole.
        for name, values in sorted(request.POST.lists()):
            digest.update(f"{name}={values!r}\0".encode())
        for name, upload in sorted(request.FILES.items()):
            digest.update(f"{name}:{upload.name}\0".encode())
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)
    else:
        digest.update(request.body)
    return digest.hexdigest()
