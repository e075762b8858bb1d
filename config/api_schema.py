"""The error answers of the API, added to every operation of the OpenAPI schema (drf-spectacular post-processing).

DRF answers them from its exception handler (`config.api.api_exception_handler`) rather than from the views, so
drf-spectacular cannot see them by itself.
"""

DETAIL_ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
VALIDATION_ERROR = {
    "type": "object",
    "description": 'Messages per field, e.g. `{"amount": ["Amount is required to enter the stage “Proposal”."]}`; '
    "errors not tied to one field are under `non_field_errors`, a malformed body under `detail`.",
    "additionalProperties": {
        "oneOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "string"},
            {"type": "object"},
        ]
    },
}

_DETAIL = {"$ref": "#/components/schemas/ErrorDetail"}
_VALIDATION = {"$ref": "#/components/schemas/ValidationErrorBody"}


def _response(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors_of(path: str, method: str) -> dict[str, dict]:
    is_detail = "{id}" in path
    writes = method in {"post", "put", "patch"}
    errors = {
        "400": _response("Invalid input or query parameters.", _VALIDATION),
        "401": _response("Not authenticated, or the token is invalid, expired or revoked.", _DETAIL),
        "403": _response(
            "Authenticated, but not allowed to do this (e.g. a record you may see but not change).", _DETAIL
        ),
        "404": _response("No such record within your visibility (or no such page).", _DETAIL),
        "405": _response("Method not allowed.", _DETAIL),
        "406": _response("Not acceptable: the API answers JSON.", _DETAIL),
        "429": _response("Too many requests; retry after `Retry-After` seconds.", _DETAIL),
    }
    if writes:
        errors["413"] = _response("The request body is too large.", _DETAIL)
        errors["415"] = _response("Unsupported media type: send JSON.", _DETAIL)
    conflicts = []
    if method in {"post", "patch"}:
        conflicts.append("a request with this `Idempotency-Key` is still running (retry after `Retry-After`)")
        errors["422"] = _response("This `Idempotency-Key` was used with another request.", _DETAIL)
    if writes and path.startswith("/api/v1/deals/{id}/"):
        conflicts.append("the `version` sent is no longer the current one")
    if conflicts:
        errors["409"] = _response("Conflict: " + ", or ".join(conflicts) + ".", _DETAIL)
    if path.startswith("/api/v1/metrics/recompute/"):
        errors["503"] = _response("The task queue or the database is unavailable; try again later.", _DETAIL)
    else:
        errors["503"] = _response(
            "The database is unavailable (restarting); retry after `Retry-After` seconds.", _DETAIL
        )
    if writes and is_detail:
        errors["412"] = _response("`If-Match` does not match the record's current ETag.", _DETAIL)
    return errors


RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}}
ETAG = {"ETag": {"schema": {"type": "string"}, "description": "Send it back as `If-Match` to write safely."}}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Makes a retry safe: the first answer is kept 24 h per user and key and replayed to a retry "
    "with the same key and body (with `Idempotent-Replayed: true`), which writes nothing more.",
}
REPLAYED = {
    "Idempotent-Replayed": {
        "schema": {"type": "string", "enum": ["true"]},
        "description": "Present when this is the kept answer of an earlier request with the same `Idempotency-Key`.",
    }
}
RATE_LIMIT = {
    "RateLimit-Policy": {
        "schema": {"type": "string"},
        "description": 'The rate limit that applies to the caller (IETF httpapi draft), e.g. `"user";q=1200;w=60`: '
        "q requests in any w seconds, per user across all their tokens (`anon`: per client address).",
    },
    "RateLimit": {
        "schema": {"type": "string"},
        "description": 'What is left of it, e.g. `"user";r=1187;t=42`: r requests remain, and in t seconds the '
        "oldest counted request stops counting. Absent while the limiter cannot be reached (the API then answers "
        "without limits).",
    },
}


def add_error_responses(result: dict, generator, request, public) -> dict:
    """Add the API's error answers (and their two body shapes) to every operation of `result`, with the headers
    that go with them: `Retry-After` on 429 and 503, `ETag` on a record's representation, the rate limit's on
    every answer."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorDetail"] = DETAIL_ERROR
    schemas["ValidationErrorBody"] = VALIDATION_ERROR
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for code, response in _errors_of(path, method).items():
                responses.setdefault(code, response)
            responses["429"].setdefault("headers", RETRY_AFTER)
            responses["503"].setdefault("headers", RETRY_AFTER)
            # Only a record's own representation carries an ETag, not its sub-resources (history, audit, ...).
            if path.endswith("{id}/") and method in {"get", "put", "patch"}:
                responses.get("200", {}).setdefault("headers", ETAG)
            keyed = method in {"post", "patch"}
            if keyed:
                operation.setdefault("parameters", []).append(IDEMPOTENCY_KEY)
            for response in responses.values():
                response["headers"] = {**response.get("headers", {}), **RATE_LIMIT, **(REPLAYED if keyed else {})}
    return result
