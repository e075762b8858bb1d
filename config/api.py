"""What every API endpoint shares: the visibility-scoped base viewset, conditional writes (ETag / If-Match) and the
mapping of domain errors to HTTP answers (SPEC §4). Parsing, pagination, filters and throttles are in `config.rest`.
"""

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError, InterfaceError, OperationalError, models, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import ISO_8601, exceptions, permissions, serializers, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler

from config.coalescing import coalescing_commit_hooks
from config.exceptions import EXTERNAL_ID_TAKEN, StaleVersion

logger = logging.getLogger(__name__)

# What a client is told to wait when the database is away: a restart or a failover takes seconds, not minutes.
DATABASE_RETRY_AFTER_SECONDS = 5

# --- Errors -------------------------------------------------------------------------------------------------------


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is larger than the server accepts."
    default_code = "request_too_large"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The record was changed by someone else: reload it and try again."
    default_code = "conflict"


# A write that a concurrent one made impossible after it was validated (a related record deleted meanwhile).
WRITE_CONFLICT = "A concurrent write conflicted with this one: send it again."


class PreconditionFailed(exceptions.APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "If-Match does not match the current ETag: the record changed since you read it."
    default_code = "precondition_failed"


class DatabaseUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database is unavailable (restarting or unreachable): try again in a few seconds."
    default_code = "database_unavailable"
    # DRF's handler turns `wait` into a Retry-After header.
    wait = DATABASE_RETRY_AFTER_SECONDS


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler, taught the domain's errors: a service's ValidationError is a 400 with per-field messages
    (`{"field": ["message", ...]}`), a stale `version` is a 409, a body over `DATA_UPLOAD_MAX_MEMORY_SIZE` a 413,
    a database that cannot be reached (restarting, failing over) a 503 with Retry-After, a value the database
    refused (out of range, too long) a 400, a write a concurrent one made impossible a 400 or 409 (`refused_write`)."""
    if isinstance(exc, DataError):
        exc = exceptions.ValidationError(detail=refused_value_messages(exc))
    elif isinstance(exc, OperationalError | InterfaceError):
        logger.warning("API request failed: database unavailable (%s)", exc.__class__.__name__, exc_info=True)
        exc = DatabaseUnavailable()
    elif isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=as_serializer_error(exc))
    elif isinstance(exc, StaleVersion):
        exc = Conflict(str(exc))
    elif isinstance(exc, IntegrityError):
        exc = refused_write(exc)
    return exception_handler(exc, context)


def refused_write(error: IntegrityError) -> exceptions.APIException:
    """A write the database refused although validation let it through: a concurrent writer got there between
    the two. A value of a unique field it took meanwhile (two integrations pushing one external id) is the 400 a
    write gives once the value is taken, under that field (an external id's `EXTERNAL_ID_TAKEN`); anything else (a
    related record deleted meanwhile) a 409, to be sent again."""
    field = _unique_field_of(getattr(error.__cause__, "diag", None))
    if field is None:
        logger.info("A write conflicted with a concurrent one: %s", error)
        return Conflict(WRITE_CONFLICT)
    if field.name == "external_id":
        return exceptions.ValidationError({field.name: [EXTERNAL_ID_TAKEN]})
    message = field.error_messages["unique"] % {
        "model_name": field.model._meta.verbose_name,
        "field_label": field.verbose_name,
    }
    return exceptions.ValidationError({field.name: [message]})


def _unique_field_of(diagnosis) -> models.Field | None:
    # A unique field's constraint is named by PostgreSQL (`<table>_<column>_key`, declared with the column) or by
    # Django (`<table>_<column>_<hash>_uniq`, made unique later); a constraint of several fields is not one field's.
    table, constraint = getattr(diagnosis, "table_name", None), getattr(diagnosis, "constraint_name", None)
    if not table or not constraint:
        return None
    for model in apps.get_models():
        if model._meta.db_table != table:
            continue
        for field in model._meta.concrete_fields:
            if field.unique and not field.primary_key:
                prefix = f"{table}_{field.column}_"
                if constraint == f"{prefix}key" or (constraint.startswith(prefix) and constraint.endswith("_uniq")):
                    return field
    return None


def refused_value_messages(error: DataError) -> dict[str, list[str]]:
    """A value the database refused although validation let it through (SQLSTATE class 22: a number out of range,
    a text too long, a date it cannot hold), as per-field messages: under the column the database names (they are
    the API's field names), else under `detail`. The statement was rolled back with its transaction or savepoint.
    Logged as a warning: it is bad input, but one a check should have refused before the database did."""
    logger.warning("A value was refused by the database: %s", error, exc_info=error)
    diagnosis = getattr(error.__cause__, "diag", None)
    reason = getattr(diagnosis, "message_primary", None) or str(error).strip()
    field = getattr(diagnosis, "column_name", None) or "detail"
    return {field: [f"The database refused this value: {reason}."]}


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def api_not_found(request, *args, **kwargs):
    """Any other URL under /api/: a JSON 404, where Django would answer with an HTML page."""
    raise exceptions.NotFound()


class AdminWritesOnly(permissions.IsAuthenticated):
    """Everyone signed in may read; only admins may write (the configuration: pipelines, stages, teams...)."""

    message = "Only admins can change this."

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        return request.method in permissions.SAFE_METHODS or request.user.is_admin


# --- Fields -------------------------------------------------------------------------------------------------------


def _blank_or(format_name: str, max_length: int) -> dict:
    # An empty string is a valid value of these fields but not a valid `email`/`uri`: say both in the schema.
    return {
        "anyOf": [
            {"type": "string", "format": format_name, "maxLength": max_length},
            {"type": "string", "maxLength": 0},
        ]
    }


@extend_schema_field(_blank_or("email", 254))
class OptionalEmailField(serializers.EmailField):
    """An email address, or "" for none."""

    def __init__(self, **kwargs):
        super().__init__(allow_blank=True, required=False, max_length=254, **kwargs)


@extend_schema_field(_blank_or("uri", 200))
class OptionalURLField(serializers.URLField):
    """A URL, or "" for none."""

    def __init__(self, **kwargs):
        super().__init__(allow_blank=True, required=False, max_length=200, **kwargs)


# --- Conditional requests ------------------------------------------------------------------------------------------


def representation_etag(data: Any) -> str:
    """A weak ETag over a record's JSON representation, for records without a version counter."""
    canonical = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return f'W/"{hashlib.sha256(canonical.encode()).hexdigest()[:24]}"'


def if_match_allows(header: str, etag: str) -> bool:
    """Whether an `If-Match` header value admits `etag` (weak comparison, as fits a JSON representation)."""
    candidates = [candidate.strip() for candidate in header.split(",")]
    return "*" in candidates or etag.removeprefix("W/") in {c.removeprefix("W/") for c in candidates}


# --- Sparse fields and expansion (SPEC §4) -----------------------------------------------------------------------

# The reads that `?fields=` and `?expand=` shape: a list, and a record's own representation.
SHAPED_ACTIONS = frozenset({"list", "retrieve"})


@dataclass(frozen=True)
class Expansion:
    """A relation that `?expand=` replaces, in a read, by a small nested representation of the related record.

    `visible(user)` gives the related rows the user may see: a related record outside them is shown as its id alone
    (`{"id": 7}`), which tells no more than the unexpanded answer does."""

    serializer: type[serializers.Serializer]
    visible: Callable[[Any], QuerySet]


@dataclass(frozen=True)
class Shape:
    """What `?fields=` and `?expand=` ask of a read: the fields to keep (None: all) and the relations to nest."""

    fields: frozenset[str] | None
    expand: tuple[str, ...]


def _visible_flag(relation: str) -> str:
    return f"expand_{relation}_visible"


class ExpandedField(serializers.Field):
    """A relation as a nested object: the related record's small representation when the user may see it, its id
    alone when not, null when there is none. It reads what `VisibleViewSet.get_queryset` selected and annotated, so
    a page of expanded records costs no query more than a page of ids."""

    def __init__(self, *, relation: str, serializer: type[serializers.Serializer]):
        self.relation = relation
        self.nested = serializer
        super().__init__(source="*", read_only=True)

    def to_representation(self, instance):
        related_id = getattr(instance, instance._meta.get_field(self.relation).attname)
        if related_id is None:
            return None
        if not getattr(instance, _visible_flag(self.relation), False):
            return {"id": related_id}
        return self.nested(getattr(instance, self.relation), context=self.context).data


def _names(raw: str, parameter: str, allowed: list[str]) -> list[str]:
    """The comma-separated names of `raw`, each one of `allowed` (400 naming `parameter` and `allowed` otherwise)."""
    if not allowed:
        raise exceptions.ValidationError({parameter: ["Nothing in this list can be expanded."]})
    names = [name.strip() for name in raw.split(",")]
    unknown = [name for name in names if name and name not in allowed]
    if unknown or "" in names:
        problem = f"Unknown: {', '.join(unknown)}. " if unknown else ""
        raise exceptions.ValidationError(
            {parameter: [f"{problem}Name one or more of: {', '.join(allowed)} (separated by commas)."]}
        )
    return names


class ShapedAutoSchema(AutoSchema):
    """drf-spectacular's schema, plus `fields` (and `expand`, where a list has relations to expand) on every read
    of a `VisibleViewSet`, each naming the values it accepts."""

    def get_override_parameters(self) -> list:
        parameters = super().get_override_parameters()
        view = self.view
        if self.method != "GET" or getattr(view, "action", None) not in SHAPED_ACTIONS:
            return parameters
        parameters = [
            *parameters,
            OpenApiParameter(
                "fields",
                str,
                description="Only these fields in each record, separated by commas (e.g. `id,title`), of: "
                f"{', '.join(view.representable_fields())}. An unknown name answers 400. An ETag stays the full "
                "record's, so it can be sent as `If-Match` whatever fields were read.",
            ),
        ]
        if view.expandable:
            parameters.append(
                OpenApiParameter(
                    "expand",
                    str,
                    description="Nest these related records, separated by commas, as small objects (`id` and what "
                    f"names the record) instead of their ids: {', '.join(view.expandable)}. A related record you "
                    'may not see is `{"id": ...}` alone; none is null. An unknown name answers 400.',
                )
            )
        return parameters


# --- The base viewset ---------------------------------------------------------------------------------------------

# What visibility and permissions depend on, and what to implement instead (after PostHog's `protected_methods`).
PROTECTED_METHODS = {
    "get_queryset": "implement visible_queryset() instead, so that its rows come from a visible_* selector.",
    "get_object": "implement visible_queryset() (reads) or editable_queryset() (writes) instead, so that the record "
    "comes from the rows the user may see, and is changed only if the user may change it.",
    "get_permissions": "set permission_classes instead, so that every endpoint keeps the API's authentication.",
}


# --- Read-only representations at the speed of plain Python -------------------------------------------------------

# The fields whose `to_representation` needs nothing but the value (no request, no parent serializer), so that a
# compiled list representation may call it directly.
_CONTEXT_FREE_FIELDS = (
    serializers.BooleanField,
    serializers.CharField,
    serializers.ChoiceField,
    serializers.DateField,
    serializers.DateTimeField,
    serializers.DecimalField,
    serializers.FloatField,
    serializers.IntegerField,
    serializers.JSONField,
    serializers.UUIDField,
)


@functools.cache
def list_representation(serializer_class: type[serializers.Serializer]) -> Callable[[Any], dict] | None:
    """A function giving what `serializer_class(record).data` gives for a model record, compiled once; None when the
    serializer has a field this cannot reproduce exactly (a method field, a nested or many-to-many one, a dotted
    source), which then stays with DRF.

    A page of 50 deals spent about 11 ms of a 15 ms answer in DRF's per-field machinery (`get_attribute`, the
    `PKOnlyObject` of every foreign key). Here each field is read straight off the model: its column, or for a
    foreign key its `attname` (the id, as DRF's pk-only optimization reads it). tests/api/test_plumbing.py checks
    that every list of the API gives the same JSON both ways.
    """
    model = getattr(getattr(serializer_class, "Meta", None), "model", None)
    if model is None:
        return None
    columns = {field.name: field for field in model._meta.concrete_fields}
    fields = []
    for name, field in serializer_class().fields.items():
        if field.write_only:
            continue
        column = columns.get(field.source)
        if column is None:
            return None
        if isinstance(field, serializers.PrimaryKeyRelatedField) and field.pk_field is None and column.is_relation:
            convert = None  # the id itself
        elif isinstance(field, serializers.DecimalField) and _fixed_point_string(field):
            convert = f"{{:.{field.decimal_places}f}}".format
        elif isinstance(field, serializers.DateTimeField) and _iso_in_current_zone(field):
            convert = iso_datetime
        elif isinstance(field, _CONTEXT_FREE_FIELDS) and not column.is_relation:
            convert = field.to_representation
        else:
            return None
        fields.append((name, column.attname, convert))

    def represent(record: models.Model) -> dict:
        data = {}
        for name, attname, convert in fields:
            value = getattr(record, attname)
            data[name] = value if value is None or convert is None else convert(value)
        return data

    return represent


def _fixed_point_string(field: serializers.DecimalField) -> bool:
    as_string = getattr(field, "coerce_to_string", api_settings.COERCE_DECIMAL_TO_STRING)
    plain = not field.localize and not getattr(field, "normalize_output", False)
    return as_string and plain and bool(field.decimal_places)


def _iso_in_current_zone(field: serializers.DateTimeField) -> bool:
    output = getattr(field, "format", api_settings.DATETIME_FORMAT)
    return isinstance(output, str) and output.lower() == ISO_8601 and not hasattr(field, "timezone")


def iso_datetime(value) -> str:
    """An aware date-time as DRF's DateTimeField writes it: in the current time zone, ISO 8601, UTC as "Z"."""
    text = value.astimezone(timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class VisibleViewSet(viewsets.GenericViewSet):
    """The base of every API viewset: rows come only from `visible_queryset()`, changes only to rows of
    `editable_queryset()` (SPEC §2). Outside the visible rows a record answers 404; visible but not editable, 403.

    Subclasses implement `visible_queryset` (and `editable_queryset` when they write) with a `visible_*` /
    `editable_*` selector. Overriding `get_queryset` is refused, so no endpoint can bypass the rule.
    """

    # (The docstring above is also the description, in the API schema, of the endpoints of viewsets without their
    # own: drf-spectacular reads class docstrings through the MRO.) `get_object` and `get_permissions` are refused
    # as `get_queryset` is (PROTECTED_METHODS). Writes go through `editing()`; `UpdateMixin` and `DestroyMixin`
    # write the actions once.

    model: type[models.Model]  # what the schema generator sees, since it builds views without a user
    # The relations `?expand=` may nest, by field name (also the model's relation); none unless a viewset names them.
    expandable: dict[str, Expansion] = {}
    schema = ShapedAutoSchema()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The subclass and the mixins it puts before this class; GenericViewSet's own methods are the safe ones.
        own = cls.__mro__[: cls.__mro__.index(VisibleViewSet)]
        for name, safe_hook in PROTECTED_METHODS.items():
            if any(name in vars(klass) for klass in own):
                raise ImproperlyConfigured(f"{cls.__name__} overrides {name}: {safe_hook}")

    def visible_queryset(self) -> QuerySet:
        """The rows the requesting user may see, from a `visible_*` selector."""
        raise NotImplementedError

    def editable_queryset(self) -> QuerySet:
        """The rows the requesting user may change, from an `editable_*` selector; none unless overridden."""
        return self.visible_queryset().none()

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return self.model.objects.none()
        return self.with_expansions(self.visible_queryset())

    # --- `?fields=` and `?expand=` on reads

    def representable_fields(self) -> list[str]:
        """The field names of this read's representation: what `?fields=` may name."""
        return list(self.get_serializer_class()().fields)

    def requested_shape(self) -> Shape | None:
        """What `?fields=` and `?expand=` ask of this read, checked (400 naming the parameter and the names it
        accepts); None when neither is given, or for a request they do not shape (writes, sub-resources)."""
        if not hasattr(self, "_shape"):
            self._shape = None
            params = self.request.query_params
            shaped = self.request.method in permissions.SAFE_METHODS and self.action in SHAPED_ACTIONS
            if shaped and ("fields" in params or "expand" in params):
                fields = params.get("fields")
                expand = params.get("expand")
                self._shape = Shape(
                    fields=None if fields is None else frozenset(_names(fields, "fields", self.representable_fields())),
                    expand=() if expand is None else tuple(dict.fromkeys(_names(expand, "expand", [*self.expandable]))),
                )
        return self._shape

    def with_expansions(self, queryset: QuerySet) -> QuerySet:
        """`queryset` with the relations to expand joined in, and whether the user may see each related record, so
        that expanding costs no query per row."""
        shape = self.requested_shape()
        if shape is None or not shape.expand:
            return queryset
        user = self.request.user
        seen = {
            _visible_flag(name): Exists(
                self.expandable[name].visible(user).filter(pk=OuterRef(queryset.model._meta.get_field(name).attname))
            )
            for name in shape.expand
        }
        return queryset.select_related(*shape.expand).annotate(**seen)

    def shaped(self, serializer: serializers.BaseSerializer) -> serializers.BaseSerializer:
        """`serializer` (of one record or many) keeping only the fields asked for, with the relations asked for
        nested; unchanged when the read asks for neither."""
        shape = self.requested_shape()
        if shape is None:
            return serializer
        fields = getattr(serializer, "child", serializer).fields
        for name in [name for name in fields if shape.fields is not None and name not in shape.fields]:
            del fields[name]
        for name in shape.expand:
            if name in fields:
                fields[name] = ExpandedField(relation=name, serializer=self.expandable[name].serializer)
        return serializer

    def get_serializer(self, *args, **kwargs) -> serializers.BaseSerializer:
        return self.shaped(super().get_serializer(*args, **kwargs))

    def get_editable_object(self, *, lock: bool = False) -> models.Model:
        """The record of the URL if the user may change it: 404 when invisible, 403 when only visible, 404 when it
        was deleted meanwhile.

        With `lock`, the row is locked until the end of the caller's transaction, so that a check of `If-Match`
        and the write after it see the same version. It is locked and read in one query: a row deleted while this
        waited for its lock is not found, rather than found and then missing.
        """
        visible = self.get_object()
        editable = self.editable_queryset()
        if lock:
            # Only the record's own row: the selector's joins may reach nullable rows, which cannot be locked.
            editable = editable.select_for_update(of=("self",))
        try:
            return editable.get(pk=visible.pk)
        except ObjectDoesNotExist:
            pass
        if type(visible)._default_manager.filter(pk=visible.pk).exists():
            raise exceptions.PermissionDenied("You may see this record but not change it.")
        raise exceptions.NotFound()

    @contextmanager
    def editing(self) -> Iterator[models.Model]:
        """The record of the URL, locked for a write in one transaction, once `If-Match` admits its current ETag
        (412 otherwise): two writers holding the same ETag cannot both succeed."""
        with transaction.atomic():
            instance = self.get_editable_object(lock=True)
            self.check_if_match(instance)
            yield instance

    def validated_data(self, instance: models.Model | None = None, *, partial: bool = False) -> dict:
        """The request body, validated by the action's serializer (400 with per-field messages otherwise)."""
        serializer = self.get_serializer(instance, data=self.request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def represent(self, instance: models.Model) -> dict:
        """The record's detail representation (the viewset's `serializer_class`)."""
        return self.serializer_class(instance, context=self.get_serializer_context()).data

    def etag(self, instance: models.Model, data: dict | None = None) -> str:
        """`W/"<version>"` for versioned records (deals), otherwise a hash of the representation."""
        version = getattr(instance, "version", None)
        if version is not None:
            return f'W/"{version}"'
        return representation_etag(self.represent(instance) if data is None else data)

    def check_if_match(self, instance: models.Model) -> None:
        """Raise 412 when the request's `If-Match` does not admit the record's current ETag."""
        header = self.request.headers.get("If-Match")
        if header is not None and not if_match_allows(header, self.etag(instance)):
            raise PreconditionFailed()

    def detail_response(self, instance: models.Model, *, status_code: int = status.HTTP_200_OK) -> Response:
        """The record's representation with its ETag; a read with `?fields=` or `?expand=` gets that shape, under
        the full record's ETag, so that an `If-Match` taken from any read of the record admits a write."""
        data = self.represent(instance)
        etag = self.etag(instance, data)
        if self.requested_shape() is not None:
            data = self.shaped(self.serializer_class(instance, context=self.get_serializer_context())).data
        return Response(data, status=status_code, headers={"ETag": etag})

    def retrieve(self, request, *args, **kwargs) -> Response:
        return self.detail_response(self.get_object())

    def list(self, request, *args, **kwargs) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        represent = list_representation(self.get_serializer_class()) if self.requested_shape() is None else None
        if represent is None:
            return self.get_paginated_response(self.get_serializer(page, many=True).data)
        return self.get_paginated_response([represent(record) for record in page])


# --- The write actions, written once ------------------------------------------------------------------------------
# No docstrings on these classes and their actions: drf-spectacular would take them as the endpoints' descriptions
# (it reads class docstrings through the MRO), and the schema would change.


# `PUT` and `PATCH` of a `VisibleViewSet`: lock, If-Match and validation once, then the viewset's
# `perform_update(instance, data)`, which names the service that writes.
class UpdateMixin:
    def update(self, request, *args, **kwargs) -> Response:
        partial = kwargs.pop("partial", False)
        with self.editing() as instance:
            instance = self.perform_update(instance, self.validated_data(instance, partial=partial))
        return self.detail_response(instance)

    def partial_update(self, request, *args, **kwargs) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def perform_update(self, instance: models.Model, data: dict) -> models.Model:
        """Write `data` (validated) to `instance` (locked, If-Match checked) with the service; return the result."""
        raise NotImplementedError


# `DELETE` of a `VisibleViewSet`: lock and If-Match once, then the viewset's `perform_destroy(instance)`.
class DestroyMixin:
    def destroy(self, request, *args, **kwargs) -> Response:
        with self.editing() as instance:
            self.perform_destroy(instance)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def perform_destroy(self, instance: models.Model) -> None:
        """Delete `instance` (locked, If-Match checked) with the service."""
        raise NotImplementedError


# --- Batch upserts ------------------------------------------------------------------------------------------------

BATCH_MAX_ITEMS = 200
# What an item's `status` may be: created, updated, refused (bad input, not allowed, an id outside your visibility,
# a conflict), or, in an all-or-none batch that failed, not applied.
BATCH_ITEM_STATUSES = [(201, "201"), (200, "200"), (400, "400"), (403, "403"), (404, "404"), (409, "409"), (424, "424")]
BATCH_CONFLICT = "A concurrent write conflicted with this item: send it again."
BATCH_NOT_APPLIED = "Not applied: another item of this all-or-none batch failed, so nothing of the batch was written."


class BatchEnvelopeSerializer(serializers.Serializer):
    """The body of a batch: `items` (1 to 200 objects) and `all_or_none`."""

    items = serializers.ListField(
        child=serializers.DictField(
            error_messages={"not_a_dict": 'Each item is an object of the record\'s fields, not a "{input_type}".'}
        ),
        min_length=1,
        max_length=BATCH_MAX_ITEMS,
        error_messages={
            "not_a_list": 'Send a list of 1 to 200 objects, not a "{input_type}".',
            "min_length": "Send at least one item.",
            "max_length": "At most {max_length} items per batch.",
        },
    )
    all_or_none = serializers.BooleanField(default=False)


class BatchItemResultSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The item's place in `items`, from 0.")
    status = serializers.ChoiceField(
        choices=BATCH_ITEM_STATUSES,
        help_text="201 created, 200 updated; 400 invalid (per-field `errors`), 403 not allowed, 404 a related id "
        "outside your visibility, 409 a stale `version` or a concurrent write; 424 not applied, because another item "
        "of an all-or-none batch failed.",
    )
    id = serializers.IntegerField(
        allow_null=True, help_text="The record created or updated (for an update, also when refused); null otherwise."
    )
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text='Messages per field, as a single write answers them (`{"amount": ["..."]}`); `detail` for an '
        "answer not tied to a field. Empty when the item was written.",
    )


class BatchResultSerializer(serializers.Serializer):
    all_or_none = serializers.BooleanField()
    rolled_back = serializers.BooleanField(
        help_text="True when an all-or-none batch had a failed item: nothing of the batch was written."
    )
    items = BatchItemResultSerializer(many=True, help_text="One result per item, in the order sent.")


def batch_request_serializer(item_serializer: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The documented body of a batch of `item_serializer` items (a component per kind, e.g. `DealBatchRequest`)."""
    name = item_serializer.Meta.model.__name__
    return type(
        f"{name}BatchSerializer",
        (serializers.Serializer,),
        {
            "items": serializers.ListField(
                child=item_serializer(),
                min_length=1,
                max_length=BATCH_MAX_ITEMS,
                help_text="The records to create or update. An item whose `external_id` a record you may change "
                "holds updates that record (only the fields sent; its required fields may be left out); any other "
                "item creates one.",
            ),
            "all_or_none": serializers.BooleanField(
                default=False,
                help_text="True: if any item fails, nothing is written (the other items answer 424). False: each "
                "item is written or refused on its own.",
            ),
        },
    )


class BatchSchema(AutoSchema):
    """Documents a batch's body with the items of the viewset's create serializer."""

    _bodies: dict = {}

    def get_request_serializer(self):
        item_serializer = self.view.create_serializer_class
        if item_serializer not in self._bodies:
            self._bodies[item_serializer] = batch_request_serializer(item_serializer)
        return self._bodies[item_serializer]


class _PlainBatch:
    """The scope of a batch whose items share nothing: each item is its own write, in its own savepoint."""

    def item(self) -> transaction.Atomic:
        return transaction.atomic()

    def refused(self, record: models.Model) -> None:
        return None  # its savepoint refused it at once


_PLAIN_BATCH = _PlainBatch()


class _ItemRefused(Exception):
    def __init__(self, status_code: int, errors: dict):
        self.status_code = status_code
        self.errors = errors


def _as_messages(detail: Any) -> dict[str, list[str]]:
    """A DRF error detail as `{field: [message, ...]}`."""
    if not isinstance(detail, dict):
        detail = {"non_field_errors": detail}
    return {
        str(field): [str(message) for message in (messages if isinstance(messages, list) else [messages])]
        for field, messages in detail.items()
    }


# `POST batch/` of a `VisibleViewSet`: up to 200 creates and updates keyed by `external_id`, each through the
# viewset's own `perform_create(data)` / `perform_update(instance, data)` (so the services' rules, audit, field
# history and webhooks are those of single writes), each in a savepoint, all in one transaction; their signals
# ask for one metrics refresh in all (`config.coalescing`). The viewset names `create_serializer_class` (creates)
# and `serializer_class` (updates, as a PATCH).
class BatchUpsertMixin:
    create_serializer_class: type[serializers.Serializer]

    @extend_schema(
        responses={200: BatchResultSerializer},
        description="Create or update up to 200 records in one call, keyed by `external_id`: an item whose "
        "`external_id` is held by a record you may change updates it (200), as a PATCH would; an item without one, "
        "or with one no record holds, creates a record (201). An `external_id` held by a record you may not change "
        '(or cannot see) is refused like a single create (400, "This external id is not available."). Each item '
        "follows the rules of a single write and answers its own status and per-field errors; with "
        "`all_or_none`, any failed item rolls the whole batch back. The answer is 200 whenever the body is a "
        "valid batch: read each item's status.",
    )
    @action(detail=False, methods=["post"], filter_backends=[], pagination_class=None, schema=BatchSchema())
    def batch(self, request, *args, **kwargs) -> Response:
        envelope = BatchEnvelopeSerializer(data=request.data)
        envelope.is_valid(raise_exception=True)
        items, all_or_none = envelope.validated_data["items"], envelope.validated_data["all_or_none"]
        with transaction.atomic(), coalescing_commit_hooks():
            results = self._upsert_items(items)
            rolled_back = all_or_none and any(result["status"] >= 400 for result in results)
            if rolled_back:
                transaction.set_rollback(True)
        if rolled_back:
            for result in results:
                if result["status"] < 400:
                    created = result["status"] == status.HTTP_201_CREATED
                    result.update(
                        status=status.HTTP_424_FAILED_DEPENDENCY,
                        id=None if created else result["id"],
                        errors={"detail": [BATCH_NOT_APPLIED]},
                    )
        return Response({"all_or_none": all_or_none, "rolled_back": rolled_back, "items": results})

    def _upsert_items(self, items: list[dict]) -> list[dict]:
        keys = [_external_id_key(item) for item in items]
        # Locked in one query, in id order (two batches touching the same records wait, never deadlock); only the
        # record's own row, as in `editing()`.
        editable = {
            record.external_id: record
            for record in self.editable_queryset()
            .filter(external_id__in={key for key in keys if key})
            .select_for_update(of=("self",))
            .order_by("pk")
        }
        with self.batch_scope([key for key in keys if key]) as scope:
            outcomes = self._upsert_each(items, keys, editable, scope)
        # Read once the scope is left: a scope that holds the writes to its end gives the created records their ids
        # there, and may find that the database refused one (taken or deleted by a concurrent writer meanwhile).
        for result, record in outcomes:
            if record is None:
                continue
            refusal = scope.refused(record)
            if refusal is None:
                result["id"] = record.pk
                continue
            if result["status"] == status.HTTP_201_CREATED:  # the refused create made no record
                result["id"] = None
            if isinstance(refusal, DataError):
                result.update(status=status.HTTP_400_BAD_REQUEST, errors=refused_value_messages(refusal))
            else:
                result.update(status=status.HTTP_409_CONFLICT, errors={"detail": [BATCH_CONFLICT]})
        return [result for result, _record in outcomes]

    def batch_scope(self, external_ids: list[str]) -> AbstractContextManager:
        """A context around the items' writes, given the external ids they name, yielding a scope whose `item()` is
        the context of each item's write (a savepoint) and whose `refused(record)` gives, once it is left, the
        database error that refused a record's write (None when written): an IntegrityError is a conflict (409), a
        DataError a value refused (400); a viewset whose service shares work across a batch returns its own
        (deals: `pipeline.services.deal_batch`). It is left before the batch's transaction ends."""
        return nullcontext(_PLAIN_BATCH)

    def _upsert_each(self, items: list[dict], keys: list, editable: dict, scope: Any) -> list[tuple[dict, Any]]:
        first_index: dict[str, int] = {}
        context = self.get_serializer_context()
        serializers_by_creating = {
            True: self.create_serializer_class(context=context),
            False: self.serializer_class(partial=True, context=context),
        }
        results = []
        for index, (item, key) in enumerate(zip(items, keys, strict=True)):
            instance = editable.get(key) if key else None
            result = {"index": index, "status": 0, "id": getattr(instance, "pk", None), "errors": {}}
            record = None
            try:
                if key and first_index.setdefault(key, index) != index:
                    raise _ItemRefused(
                        status.HTTP_400_BAD_REQUEST,
                        {"external_id": [f"Item {first_index[key]} has the same external id."]},
                    )
                with scope.item():
                    record = self._upsert_one(item, instance, serializers_by_creating)
                result.update(status=status.HTTP_200_OK if instance else status.HTTP_201_CREATED)
            except _ItemRefused as refused:
                result.update(status=refused.status_code, errors=refused.errors)
            except DjangoValidationError as error:
                result.update(status=status.HTTP_400_BAD_REQUEST, errors=_as_messages(as_serializer_error(error)))
            except StaleVersion as error:
                result.update(status=status.HTTP_409_CONFLICT, errors={"version": [str(error)]})
            except IntegrityError:
                # A concurrent writer took a unique value (an external id) between the check and the write.
                result.update(status=status.HTTP_409_CONFLICT, errors={"detail": [BATCH_CONFLICT]})
            except DataError as error:
                result.update(status=status.HTTP_400_BAD_REQUEST, errors=refused_value_messages(error))
            except exceptions.ValidationError as error:
                result.update(status=status.HTTP_400_BAD_REQUEST, errors=_as_messages(error.detail))
            except exceptions.APIException as error:  # a related id outside the caller's visibility (404), ...
                result.update(status=error.status_code, errors=_as_messages({"detail": error.detail}))
            results.append((result, record if result["status"] < 400 else None))
        return results

    def _upsert_one(self, item: dict, instance: models.Model | None, by_creating: dict) -> models.Model:
        # One serializer per kind of item for the whole batch: building a ModelSerializer's fields costs more than
        # validating an item with them (about 5 ms against 0.2 for a deal).
        serializer = by_creating[instance is None]
        serializer.instance = instance  # what validators that exclude the record itself read
        data = dict(serializer.run_validation(item))  # a ValidationError with per-field messages, as is_valid()
        return self.perform_create(data) if instance is None else self.perform_update(instance, data)

    def perform_create(self, data: dict) -> models.Model:
        """Create a record from `data` (validated) with the service; return it."""
        raise NotImplementedError


def _external_id_key(item: dict) -> str | None:
    """The external id an item is keyed by, as the serializer will read it (trimmed text), or None. An id with a NUL
    character is held by no record (PostgreSQL text cannot hold one, so looking it up would fail): its item is
    refused by the serializer, field by field, like any other bad value."""
    value = item.get("external_id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    key = str(value).strip()
    return key if key and "\x00" not in key else None
