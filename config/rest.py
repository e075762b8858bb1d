"""DRF plumbing named in `settings.REST_FRAMEWORK`: pagination, filter backends and throttles.

Kept apart from `config.api` because DRF imports these while it builds `APIView` itself, so this module must not
import `rest_framework.views` (directly or through `viewsets`).
"""

import functools
import logging
import math
import uuid
from dataclasses import dataclass

import redis
from django.conf import settings
from rest_framework import exceptions, filters
from rest_framework.pagination import PageNumberPagination
from rest_framework.throttling import SimpleRateThrottle

from config.security import client_address

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
