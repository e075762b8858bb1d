"""DRF plumbing named in `settings.REST_FRAMEWORK`: pagination, filter backends and throttles, and the base of the
API's filtersets.

Kept apart from `config.api` because DRF imports these while it builds `APIView` itself, so this module must not
import `rest_framework.views` (directly or through `viewsets`).
"""

import base64
import copy
import datetime
import functools
import json
import logging
import math
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.db.models import F, Q, QuerySet
from django.db.models.expressions import Col, OrderBy
from django.db.models.sql.constants import LOUTER
from django.db.models.sql.datastructures import Join
from django.http import QueryDict
from django.utils import timezone
from django_filters import rest_framework as django_filters
from rest_framework import exceptions, filters
from rest_framework.pagination import BasePagination
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.utils.urls import replace_query_param

from config.security import client_address

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _SortKey:
    """One column of a list's order: its attname (a relation sorts by its id) and direction. NULLs come where
    PostgreSQL puts them by default (last going up, first going down), so the btree indexes serve the order."""

    field: models.Field
    descending: bool

    @property
    def name(self) -> str:
        return self.field.attname

    def reverse(self) -> "_SortKey":
        return _SortKey(self.field, not self.descending)

    def order_by(self) -> OrderBy:
        column = F(self.name)
        return column.desc(nulls_first=True) if self.descending else column.asc(nulls_last=True)

    def beyond(self, value: Any) -> Q:
        """The rows strictly after `value` in this key's order."""
        nullable = self.field.null
        if value is None:
            # NULLs are first going down (everything else follows them) and last going up (nothing follows).
            return Q(**{f"{self.name}__isnull": False}) if self.descending else Q(pk__in=[])
        after = Q(**{f"{self.name}__lt" if self.descending else f"{self.name}__gt": value})
        return after | Q(**{f"{self.name}__isnull": True}) if nullable and not self.descending else after

    def from_or_beyond(self, value: Any) -> Q:
        """The rows at or after `value`: a bound on the first key alone, which its index can seek to."""
        if value is None:
            return Q() if self.descending else Q(**{f"{self.name}__isnull": True})
        bound = Q(**{f"{self.name}__lte" if self.descending else f"{self.name}__gte": value})
        return bound | Q(**{f"{self.name}__isnull": True}) if self.field.null and not self.descending else bound

    def equal(self, value: Any) -> Q:
        return Q(**{f"{self.name}__isnull": True}) if value is None else Q(**{self.name: value})

    def encode(self, instance: models.Model) -> Any:
        value = getattr(instance, self.name)
        return (
            value.isoformat()
            if isinstance(value, datetime.date)
            else str(value)
            if isinstance(value, Decimal | uuid.UUID)
            else value
        )

    def decode(self, value: Any) -> Any:
        if value is None:
            return None
        value = self.field.to_python(value)
        if isinstance(value, datetime.datetime) and timezone.is_naive(value):
            raise DjangoValidationError("naive time")
        return value


def _sort_keys(queryset: QuerySet) -> list[_SortKey]:
    """The order of `queryset` as keys, ending with the primary key so that no two rows tie."""
    meta = queryset.model._meta
    terms = list(queryset.query.order_by) or list(meta.ordering or [])
    keys = []
    for term in terms:
        if isinstance(term, OrderBy) and isinstance(term.expression, F):
            name, descending = term.expression.name, term.descending
        elif isinstance(term, str):
            name, descending = term.removeprefix("-"), term.startswith("-")
        else:
            raise ImproperlyConfigured(f"A cursor cannot follow the order term {term!r} of {meta.label}.")
        field = meta.pk if name == "pk" else meta.get_field(name)
        keys.append(_SortKey(field, descending))
        if field.primary_key:
            return keys
    return [*keys, _SortKey(meta.pk, keys[0].descending if keys else False)]


class ApiPagination(BasePagination):
    """Cursor pagination on every list (SPEC §4): `{"next", "previous", "results"}` (and `count` with
    `?count=true`), `page_size` rows (1 to 200, 50 unless asked).

    The cursor holds the sort values of the row it continues from, and the next page is the rows strictly beyond
    them in the list's order, primary key last: rows created, changed or deleted elsewhere never shift a page, so a
    walk neither repeats nor skips a row that stayed where it was, and a deep page costs what the first costs (an
    index seek, no OFFSET). A row whose sort value changes during the walk is seen where it is when the walk gets
    there: once, twice (sorted by a time that grows, as `updated_at` going up) or not in this walk (going down).
    A list that is not a query (an import's report, fixed once written) is walked by position.
    """

    page_size = 50
    max_page_size = 200
    cursor_query_param = "cursor"
    page_size_query_param = "page_size"
    count_query_param = "count"

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.page_size = self._requested_page_size(request)
        self.count = self._count_if_asked(request, queryset, view)
        if "page" in request.query_params:
            raise exceptions.ValidationError({"page": ["Lists are walked with `cursor`: follow the `next` link."]})
        cursor = self._decoded_cursor(request)
        if not isinstance(queryset, QuerySet):
            return self._paginate_sequence(list(queryset), cursor)
        keys = _sort_keys(queryset)
        self.signature = self._signature(keys)
        backwards = bool(cursor) and cursor.get("d") == "p"
        walk_keys = [key.reverse() for key in keys] if backwards else keys
        rows = queryset.order_by(*(key.order_by() for key in walk_keys))
        if cursor:
            position = self._position(cursor, keys)
            rows = rows.filter(self._beyond(walk_keys, position))
        page = list(self._first_rows(rows, self.page_size + 1))
        more = len(page) > self.page_size
        page = page[: self.page_size]
        if backwards:
            page.reverse()
        self.next_position = self._encode(keys, page[-1]) if page and (more or backwards) else None
        self.previous_position = self._encode(keys, page[0]) if page and cursor and (more or not backwards) else None
        return page

    def _paginate_sequence(self, rows: list, cursor: dict | None) -> list:
        start = cursor.get("i", 0) if cursor else 0
        if not isinstance(start, int) or start < 0:
            raise exceptions.ValidationError({self.cursor_query_param: ["Invalid cursor."]})
        end = start + self.page_size
        self.next_position = {"i": end} if end < len(rows) else None
        self.previous_position = {"i": max(start - self.page_size, 0)} if start else None
        return rows[start:end]

    @staticmethod
    def _first_rows(rows: QuerySet, count: int) -> QuerySet:
        query = rows.query
        joins = query.select_related or (query.values_select and len(query.alias_map) > 1)
        if not joins or query.distinct or query.combinator or query.group_by is not None:
            return rows[:count]
        # A list that joins its rows' relations (`?expand=`, the deal table's values) picks the page's ids first, on
        # its own table, and joins only those: PostgreSQL sorts after its joins, so a filter matching 1,880 deals of a
        # manager's stage joined as many organizations and contacts to keep 51 (204 ms on L; docs/performance.md,
        # "The deal table"). A distinct, combined or grouped list is left as it is.
        return rows.filter(pk__in=_without_unfiltered_joins(rows.values("pk"))[:count])[:count]

    @staticmethod
    def _beyond(keys: list[_SortKey], position: list) -> Q:
        # (k1, k2, ...) beyond (v1, v2, ...) spelled out key by key, plus a bound on k1 alone for its index.
        beyond, equal = Q(pk__in=[]), Q()
        for key, value in zip(keys, position, strict=True):
            beyond |= equal & key.beyond(value)
            equal &= key.equal(value)
        return keys[0].from_or_beyond(position[0]) & beyond

    @staticmethod
    def _encode(keys: list[_SortKey], instance: models.Model) -> list:
        return [key.encode(instance) for key in keys]

    def _position(self, cursor: dict, keys: list[_SortKey]) -> list:
        values = cursor.get("v")
        if not isinstance(values, list) or len(values) != len(keys) or cursor.get("o") != self._signature(keys):
            raise exceptions.ValidationError(
                {self.cursor_query_param: ["This cursor belongs to another list or ordering: start the walk again."]}
            )
        try:
            return [key.decode(value) for key, value in zip(keys, values, strict=True)]
        except (DjangoValidationError, TypeError, ValueError) as error:
            raise exceptions.ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from error

    @staticmethod
    def _signature(keys: list[_SortKey]) -> str:
        return ",".join(("-" if key.descending else "") + key.name for key in keys)

    def _decoded_cursor(self, request) -> dict | None:
        raw = request.query_params.get(self.cursor_query_param)
        if raw is None:
            return None
        try:
            cursor = json.loads(base64.urlsafe_b64decode(raw.encode("ascii") + b"=" * (-len(raw) % 4)))
        except (ValueError, UnicodeError) as error:
            raise exceptions.ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from error
        if not isinstance(cursor, dict):
            raise exceptions.ValidationError({self.cursor_query_param: ["Invalid cursor."]})
        return cursor

    def _link(self, position: list | dict | None, direction: str) -> str | None:
        if position is None:
            return None
        # A position in a sequence is its index; in a query, the sort values of a row.
        cursor = position if isinstance(position, dict) else {"v": position, "o": self.signature, "d": direction}
        raw = base64.urlsafe_b64encode(json.dumps(cursor, separators=(",", ":")).encode()).decode().rstrip("=")
        return replace_query_param(self.request.build_absolute_uri(), self.cursor_query_param, raw)

    def _requested_page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise exceptions.ValidationError(
                {self.page_size_query_param: [f"A whole number from 1 to {self.max_page_size}."]}
            )
        return int(raw)

    def _count_if_asked(self, request, rows, view) -> int | None:
        raw = request.query_params.get(self.count_query_param, "false")
        if raw not in ("true", "false"):
            raise exceptions.ValidationError({self.count_query_param: ["`true` or `false`."]})
        if raw == "false":
            return None
        # A list whose length is kept with its rows (stale deals: their run's totals) says so rather than be counted.
        count_rows = getattr(view, "count_rows", None)
        if count_rows is not None:
            return count_rows(rows)
        return rows.count() if isinstance(rows, QuerySet) else len(rows)

    def get_paginated_response(self, data) -> Response:
        return Response(self.envelope(data))

    def envelope(self, data) -> dict:
        """`next`, `previous` (and `count` when asked) around the page's `results`."""
        body = {"next": self._link(self.next_position, "n"), "previous": self._link(self.previous_position, "p")}
        if self.count is not None:
            body["count"] = self.count
        return {**body, "results": data}

    def get_paginated_response_schema(self, schema: dict) -> dict:
        link = {"type": "string", "nullable": True, "format": "uri"}
        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {
                "next": {**link, "description": "The next page, or null at the end of the list."},
                "previous": {**link, "description": "The page before, or null on the first page."},
                "count": {"type": "integer", "description": "How many rows the list has; only with `?count=true`."},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {
                "name": self.cursor_query_param,
                "in": "query",
                "required": False,
                "description": "Where to go on: the opaque value of a `next` or `previous` link.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "in": "query",
                "required": False,
                "description": f"Rows per page, 1 to {self.max_page_size} (default {self.page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
            {
                "name": self.count_query_param,
                "in": "query",
                "required": False,
                "description": "`true` to add `count`, the number of rows in the whole list (it costs a count).",
                "schema": {"type": "boolean"},
            },
        ]


def _refuse_nul(value: str, parameter: str) -> str:
    # PostgreSQL text cannot hold NUL: without this check such a query parameter would end in a 500.
    if "\x00" in value:
        raise exceptions.ValidationError({parameter: ["Null characters are not allowed."]})
    return value


class FilterSet(django_filters.FilterSet):
    """django-filter's FilterSet, its form class built once per filterset class. django-filter builds it for every
    request from the filters' fields, each made anew with its label (3 of the 18 ms a deal list took in-process
    on L). None of ours has a field that depends on the request or the instance (related records are filtered by
    raw id), so the class the first request made serves the later ones; each form still gets its own fields.

    And its filters copied, not deep-copied: django-filter deep-copies every filter for every filterset (0.34 ms
    for the deals' 21). A filter holds nothing of a request but the model and the filterset set below, and its
    field once made: each filterset's own in a copy."""

    def __init__(self, data=None, queryset=None, *, request=None, prefix=None):
        # django-filter's own __init__ (26.2), but for the copy of the filters.
        if queryset is None:
            queryset = self._meta.model._default_manager.all()
        self.is_bound = data is not None
        self.data = data or QueryDict()
        self.queryset = queryset
        self.request = request
        self.form_prefix = prefix
        self.filters = {name: _filter_of_one_filterset(filter_) for name, filter_ in self.base_filters.items()}
        for filter_ in self.filters.values():
            filter_.model = queryset.model
            filter_.parent = self

    def get_form_class(self):
        filterset = type(self)
        form_class = filterset.__dict__.get("_form_class")
        if form_class is None:
            form_class = filterset._form_class = super().get_form_class()
        return form_class


def _without_unfiltered_joins(ids: QuerySet) -> QuerySet:
    """`ids` without the outer joins that only its rows' values made (`organization__name`): PostgreSQL leaves such a
    join out of the plan, but not the column it joins on, so the ids could no longer be read from an index alone (a
    manager's stage in the deal table's order: 1,880 deals, 1,838 heap blocks; 0.7 ms from the index). A join the
    filters or the order read is kept, with the joins it hangs from."""
    query = ids.query
    if any("__" in str(term) or str(term).lstrip("-") in query.annotations for term in query.order_by):
        return ids  # an order across a relation, or by an annotation: its joins are the order's
    try:
        kept = {expr.alias for expr in _expressions(query.where) if isinstance(expr, Col)}
    except TypeError:  # a clause this cannot read (`extra()`): every join stays
        return ids
    for alias in list(kept):
        while (join := query.alias_map.get(alias)) is not None and getattr(join, "parent_alias", None):
            kept.add(alias := join.parent_alias)
    for alias, join in query.alias_map.items():
        if isinstance(join, Join) and join.join_type == LOUTER and alias not in kept:
            query.alias_refcount[alias] = 0
    return ids


def _expressions(node):
    """Every expression of a where clause, its lookups' operands included."""
    for child in node.children:
        if hasattr(child, "children"):
            yield from _expressions(child)
        elif hasattr(child, "flatten"):
            yield from child.flatten()
        else:
            raise TypeError(f"not an expression: {child!r}")


def _filter_of_one_filterset(filter_: django_filters.Filter) -> django_filters.Filter:
    """A copy of a filterset class's filter for one filterset: with a field of its own once made, and its `method`
    (a `FilterMethod` that holds the filter it serves, to find the filterset) bound to the copy."""
    copied = copy.copy(filter_)
    copied.__dict__.pop("_field", None)
    if copied.method is not None:
        copied.method = copied.method  # the setter makes a FilterMethod of the copy
    return copied


class SearchFilter(filters.SearchFilter):
    """`?search=` over the view's `search_fields`, or through its `search_queryset(queryset, terms)` where a search
    that crosses a join needs its own query shape to use the indexes (the deals: `pipeline.selectors.search_deals`).
    A list keeps its ordering when searched: the cursor holds the sort values of its last row, and a rank is not
    one of the keys a list may be ordered by."""

    def get_search_terms(self, request):
        _refuse_nul(request.query_params.get(self.search_param, ""), self.search_param)
        return super().get_search_terms(request)

    def filter_queryset(self, request, queryset, view):
        search_queryset = getattr(view, "search_queryset", None)
        if search_queryset is None:
            return super().filter_queryset(request, queryset, view)
        terms = self.get_search_terms(request)
        return search_queryset(queryset, terms) if terms else queryset


class OrderingFilter(filters.OrderingFilter):
    """`?ordering=` over the view's `ordering_fields` (on the big lists, the keys an index serves), with the
    primary key as the last tie-breaker so that pages never repeat or skip a row. Any other key is a 400 naming
    the allowed ones, where DRF would quietly ignore it."""

    def remove_invalid_fields(self, queryset, fields, view, request):
        valid = super().remove_invalid_fields(queryset, fields, view, request)
        if len(valid) < len([term for term in fields if term]):
            allowed = ", ".join(name for name, _label in self.get_valid_fields(queryset, view, {"request": request}))
            raise exceptions.ValidationError({self.ordering_param: [f"Order by one of: {allowed} (- for descending)."]})
        return valid

    def get_ordering(self, request, queryset, view):
        ordering = super().get_ordering(request, queryset, view) or queryset.model._meta.ordering
        ordering = list(ordering or [])
        if not any(term.lstrip("-") in {"id", "pk"} for term in ordering):
            ordering.append("-id" if ordering and ordering[0].startswith("-") else "id")
        return ordering


# One round trip, atomic: drop the requests older than the window, count the rest, and record this one if there is
# room. A sliding log (one sorted-set member per accepted request) holds "at most q in any w seconds" exactly, where a
# read-then-write counter (DRF's cache history) lets concurrent requests through together. The time is Redis's own,
# so that several web hosts share one clock.
_SLIDING_LOG = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if ARGV[3] == '1' and count < limit then
    redis.call('ZADD', KEYS[1], now, ARGV[4])
    redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
    count = count + 1
    allowed = 1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reset = 0
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
return {allowed, count, reset}
"""


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT_SECONDS,
        socket_timeout=RATE_LIMIT_REDIS_TIMEOUT_SECONDS,
    )


# A rate limit must never slow the API down much: a Redis that does not answer in this time counts as down.
RATE_LIMIT_REDIS_TIMEOUT_SECONDS = 2


@dataclass(frozen=True)
class RateLimitState:
    """Where a caller stands against one policy, for the `RateLimit-Policy` and `RateLimit` headers."""

    policy: str
    quota: int
    window_seconds: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        """The headers of the IETF httpapi draft (draft-ietf-httpapi-ratelimit-headers): the policy, and what is
        left of it with the seconds until a used unit of quota is given back."""
        return {
            "RateLimit-Policy": f'"{self.policy}";q={self.quota};w={self.window_seconds}',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={self.reset_seconds}',
        }


class SlidingWindowRateThrottle(SimpleRateThrottle):
    """At most `num_requests` in any `duration` seconds per identity, counted atomically in Redis; while Redis is
    away the API keeps answering (SPEC §7) and logs that it is not limiting. The state of the last check is kept on
    the request for `RateLimitHeadersMiddleware`."""

    def identity(self, request) -> str | None:
        """Whose budget the request spends, or None when this policy does not apply to it."""
        raise NotImplementedError

    def get_cache_key(self, request, view) -> str | None:
        identity = self.identity(request)
        return None if identity is None else f"ratelimit:{self.scope}:{identity}"

    def check(self, request, *, consume: bool) -> tuple[bool, RateLimitState] | None:
        """Count the request (with `consume`) or only read the state; None when the policy does not apply."""
        key = self.get_cache_key(request, None)
        if key is None or self.rate is None:
            return None
        window_us = self.duration * 1_000_000
        allowed, count, reset_us = _redis().eval(
            _SLIDING_LOG, 1, key, window_us, self.num_requests, "1" if consume else "0", uuid.uuid4().hex
        )
        state = RateLimitState(
            policy=self.scope,
            quota=self.num_requests,
            window_seconds=self.duration,
            remaining=max(self.num_requests - count, 0),
            reset_seconds=math.ceil(reset_us / 1_000_000),
        )
        return bool(allowed) or not consume, state

    def allow_request(self, request, view) -> bool:
        try:
            checked = self.check(request, consume=True)
        except redis.exceptions.RedisError:
            logger.warning("rate limits not applied: Redis is unavailable", exc_info=True)
            return True
        if checked is None:
            return True
        allowed, state = checked
        request._request.rate_limit = state
        self.wait_seconds = None if allowed else max(state.reset_seconds, 1)
        return allowed

    def wait(self) -> int | None:
        return self.wait_seconds


class UserRateThrottle(SlidingWindowRateThrottle):
    """`API_THROTTLE_USER` requests per user, whatever the mix of their tokens and browser session: a second token
    is not a second budget."""

    scope = "user"

    def identity(self, request) -> str | None:
        user = getattr(request, "user", None)
        return f"user-{user.pk}" if user is not None and user.is_authenticated else None


class AnonymousRateThrottle(SlidingWindowRateThrottle):
    """`API_THROTTLE_ANON` requests per client address (`client_address`) for requests without credentials."""

    scope = "anon"

    def identity(self, request) -> str | None:
        user = getattr(request, "user", None)
        return None if user is not None and user.is_authenticated else f"address-{client_address(request)}"


class RateLimitHeadersMiddleware:
    """`RateLimit-Policy` and `RateLimit` on every API answer. The throttle leaves its state on the request; an
    answer given before the throttles ran (401, 403) reads the caller's state without spending any of it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith("/api/"):
            state = getattr(request, "rate_limit", None) or self._peek(request)
            if state is not None:
                for name, value in state.headers().items():
                    response[name] = value
        return response

    @staticmethod
    def _peek(request) -> RateLimitState | None:
        for policy in (UserRateThrottle, AnonymousRateThrottle):
            try:
                checked = policy().check(request, consume=False)
            except redis.exceptions.RedisError:
                return None
            if checked is not None:
                return checked[1]
        return None
