"""DRF plumbing named in `settings.REST_FRAMEWORK`: pagination, filter backends and throttles.

Kept apart from `config.api` because DRF imports these while it builds `APIView` itself, so this module must not
import `rest_framework.views` (directly or through `viewsets`).
"""

import logging

import redis
from rest_framework import exceptions, filters
from rest_framework.pagination import PageNumberPagination
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

logger = logging.getLogger(__name__)


class ApiPagination(PageNumberPagination):
    """`{"count", "next", "previous", "results"}`, 50 rows a page unless `page_size` (at most 200) says otherwise."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def _refuse_nul(value: str, parameter: str) -> str:
    # PostgreSQL text cannot hold NUL: without this check such a query parameter would end in a 500.
    if "\x00" in value:
        raise exceptions.ValidationError({parameter: ["Null characters are not allowed."]})
    return value


class SearchFilter(filters.SearchFilter):
    """`?search=` over the view's `search_fields`."""

    def get_search_terms(self, request):
        _refuse_nul(request.query_params.get(self.search_param, ""), self.search_param)
        return super().get_search_terms(request)


class OrderingFilter(filters.OrderingFilter):
    """`?ordering=` over the view's `ordering_fields`, with the primary key as the last tie-breaker so that
    pages never repeat or skip a row."""

    def get_ordering(self, request, queryset, view):
        ordering = super().get_ordering(request, queryset, view) or queryset.model._meta.ordering
        ordering = list(ordering or [])
        if not any(term.lstrip("-") in {"id", "pk"} for term in ordering):
            ordering.append("-id" if ordering and ordering[0].startswith("-") else "id")
        return ordering


class _FailOpen:
    """Throttling keeps its counters in Redis; while Redis is away the API keeps answering (SPEC §7)."""

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except redis.exceptions.RedisError:
            logger.warning("throttling skipped: Redis is unavailable", exc_info=True)
            return True


class UserOrTokenRateThrottle(_FailOpen, UserRateThrottle):
    """`API_THROTTLE_USER` requests per token (each token its own budget) or per session user."""

    def get_cache_key(self, request, view) -> str | None:
        if not request.user or not request.user.is_authenticated:
            return None
        token_id = getattr(request.auth, "pk", None)
        ident = f"token-{token_id}" if token_id is not None else f"user-{request.user.pk}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AnonymousRateThrottle(_FailOpen, AnonRateThrottle):
    """`API_THROTTLE_ANON` requests per client address for requests without credentials."""
