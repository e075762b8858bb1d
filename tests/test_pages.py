"""The browser entry points of the foundation: log in, a home page by visibility, health."""

import pytest
from django.urls import reverse

from tests.factories import make_deal

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get(reverse("home"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_login_page_has_a_csrf_protected_form(client):
    response = client.get(reverse("login"))

    assert response.status_code == 200
    assert b"csrfmiddlewaretoken" in response.content


def test_logging_in_shows_the_pipelines_the_user_can_see(client, org, pipeline):
    make_deal(owner=org.rep, pipeline=pipeline, amount=1000)
    make_deal(owner=org.other_rep, pipeline=pipeline, amount=7000)

    response = client.post(reverse("login"), {"username": "rep", "password": "secret-pass-1"}, follow=True)

    assert response.status_code == 200
    assert response.context["user"] == org.rep
    [row] = response.context["summary"]
    assert (row["pipeline__name"], row["open_count"], row["open_amount"]) == ("New Business", 1, 1000)


def test_a_wrong_password_is_refused_with_a_message(client, org):
    response = client.post(reverse("login"), {"username": "rep", "password": "nope"})

    assert response.status_code == 200
    assert b"didn't match" in response.content


def test_user_text_is_escaped_on_the_home_page(client, org, pipeline):
    pipeline.name = "<script>alert(1)</script>"
    pipeline.save()
    make_deal(owner=org.rep, pipeline=pipeline)
    client.force_login(org.rep)

    response = client.get(reverse("home"))

    assert b"<script>alert(1)</script>" not in response.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.content


def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"], body["broker"]) == ("ok", "ok", "ok")
