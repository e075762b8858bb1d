"""Exceptions no view handled: a database that cannot be reached is a 503 that says so (config/errors.py).

tests/faults/test_postgres_restart.py shows the same with a real PostgreSQL stopped under gunicorn; here the views
raise the error that psycopg would, so that each answer's shape is checked quickly.
"""

import pytest
from django.db import InterfaceError, OperationalError
from django.test import Client, override_settings
from django.urls import path
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny


def raising(error: Exception):
    def view(request):
        raise error

    return view


@api_view(["GET"])
@permission_classes([AllowAny])
def api_raising(request):
    raise OperationalError("connection failed: Connection refused")


urlpatterns = [
    path("page/", raising(OperationalError("server closed the connection unexpectedly"))),
    path("page/interface/", raising(InterfaceError("connection already closed"))),
    path("page/bug/", raising(ZeroDivisionError())),
    path("api/v1/drf/", api_raising),
    path("api/v1/plain/", raising(OperationalError("connection failed"))),
    path("api/v1/bug/", raising(ZeroDivisionError())),
]
handler500 = "config.errors.server_error"


@pytest.fixture
def client():
    with override_settings(ROOT_URLCONF=__name__):
        yield Client(raise_request_exception=False)


@pytest.mark.parametrize("url", ["/page/", "/page/interface/"])
def test_a_page_answers_a_readable_503_when_the_database_is_away(client, url):
    response = client.get(url)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert b"Temporarily unavailable" in response.content
    assert b"Traceback" not in response.content and b"connection" not in response.content.lower()


@pytest.mark.parametrize("url", ["/api/v1/drf/", "/api/v1/plain/"])
def test_the_api_answers_a_json_503_when_the_database_is_away(client, url):
    response = client.get(url)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json() == {
        "detail": "The database is unavailable (restarting or unreachable): try again in a few seconds."
    }


def test_other_errors_stay_500s_json_under_the_api(client):
    assert client.get("/page/bug/").status_code == 500
    response = client.get("/api/v1/bug/")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error."}
