"""API rate limits (SPEC §4, §7): counted atomically in Redis per user across their tokens and per client address,
announced by `RateLimit-Policy` / `RateLimit` on every answer, 429 with `Retry-After`, open while Redis is down."""

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.services import create_api_token
from config import rest
from config.rest import AnonymousRateThrottle, UserRateThrottle
from tests.api.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits(monkeypatch):
    """`limits(user="5/minute", anon=...)`: set the policies for the test, on counters that start at zero."""
    cache.clear()  # the counters live in the tests' Redis database

    def set_limits(**rates: str) -> None:
        for throttle in (UserRateThrottle, AnonymousRateThrottle):
            monkeypatch.setattr(throttle, "THROTTLE_RATES", {**throttle.THROTTLE_RATES, **rates})

    yield set_limits
    cache.clear()


def remaining(response) -> int:
    return int(re.search(r";r=(\d+)", response["RateLimit"]).group(1))


def test_every_answer_announces_the_policy_and_what_is_left_of_it(org, limits):
    limits(user="5/minute")
    client = client_for(org.rep)
    answers = [client.get("/api/v1/me/") for _ in range(3)]
    assert [answer["RateLimit-Policy"] for answer in answers] == ['"user";q=5;w=60'] * 3
    assert [remaining(answer) for answer in answers] == [4, 3, 2]
    reset = int(re.search(r";t=(\d+)", answers[-1]["RateLimit"]).group(1))
    assert 0 < reset <= 60


def test_over_the_limit_is_429_with_retry_after_and_nothing_left(org, limits):
    limits(user="3/minute")
    client = client_for(org.rep)
    statuses = [client.get("/api/v1/me/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = client.get("/api/v1/me/")
    assert refused.status_code == 429 and "detail" in refused.json()
    assert 0 < int(refused["Retry-After"]) <= 60 and remaining(refused) == 0


def test_more_tokens_are_not_more_budget(org, limits):
    limits(user="4/minute")
    first, second = client_for(org.rep), client_for(org.rep)
    statuses = [client.get("/api/v1/me/").status_code for client in (first, second, first, second, first, second)]
    assert statuses == [200, 200, 200, 200, 429, 429]
    assert client_for(org.teammate).get("/api/v1/me/").status_code == 200  # another user has a budget of their own


def test_the_browser_session_spends_the_same_budget_as_the_tokens(org, limits, client):
    limits(user="2/minute")
    client.force_login(org.rep)
    assert client.get("/api/v1/me/").status_code == 200
    assert client_for(org.rep).get("/api/v1/me/").status_code == 200
    assert client.get("/api/v1/me/").status_code == 429


def test_an_answer_refused_before_the_throttle_still_carries_the_headers_without_spending(org, limits):
    limits(anon="3/minute")
    anonymous = client_for(org.rep)
    anonymous.credentials()  # no token: 401 before the throttles run
    answers = [anonymous.get("/api/v1/me/") for _ in range(5)]
    assert {answer.status_code for answer in answers} == {401}
    assert {answer["RateLimit-Policy"] for answer in answers} == {'"anon";q=3;w=60'}
    assert {remaining(answer) for answer in answers} == {3}


def test_forwarded_for_is_ignored_without_trusted_proxies(db, limits, settings):
    limits(anon="2/minute")
    settings.TRUSTED_PROXY_COUNT = 0
    anonymous = APIClient()
    statuses = [anonymous.get("/api/schema/", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code for n in range(3)]
    assert statuses[-1] == 429, "a new X-Forwarded-For each time must not be a new budget"


def test_behind_a_trusted_proxy_the_address_it_saw_is_the_budget(db, limits, settings):
    limits(anon="2/minute")
    settings.TRUSTED_PROXY_COUNT = 1
    anonymous = APIClient()

    def schema(forwarded_for: str) -> int:
        return anonymous.get("/api/schema/", HTTP_X_FORWARDED_FOR=forwarded_for).status_code

    # The proxy appends the address it saw; what the client put before it is the client's to invent.
    assert [schema(f"10.9.9.{n}, 198.51.100.7") for n in range(3)] == [200, 200, 429]
    assert schema("198.51.100.8") == 200


def test_throttling_fails_open_while_redis_is_down(org, limits, monkeypatch):
    limits(user="1/minute")
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    monkeypatch.setattr(rest, "_redis", lambda: down)
    client = client_for(org.rep)
    answers = [client.get("/api/v1/me/") for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert "RateLimit" not in answers[0]


@pytest.mark.django_db(transaction=True)
def test_concurrent_clients_get_exactly_the_limit_and_no_more(org, limits, live_server):
    """Eight clients on the same user's tokens, released together: the budget is never overshot."""
    limits(user="30/minute")
    tokens = [create_api_token(user=org.rep, name=f"client {n}")[1] for n in range(8)]
    start = threading.Barrier(len(tokens))

    def walk(token: str) -> list[int]:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        start.wait()
        return [session.get(f"{live_server.url}/api/v1/me/", timeout=30).status_code for _ in range(10)]

    with ThreadPoolExecutor(len(tokens)) as pool:
        statuses = [status for walked in pool.map(walk, tokens) for status in walked]
    assert statuses.count(200) == 30 and statuses.count(429) == 50
