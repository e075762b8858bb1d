"""The session engine (`config.sessions`): Django's database sessions read by a statement of ours. A page reads the
session it was given, and refuses an expired, unknown or deleted one, exactly as Django's engine does."""

from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore as DjangosStore
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import timezone

from config.sessions import SessionStore
from tests.queries import capture_queries

pytestmark = pytest.mark.django_db

PAGE = reverse("pipeline:deal_table")


def test_a_session_reads_what_djangos_engine_reads(org):
    saved = DjangosStore()
    saved["note"] = {"pipeline": 3, "seen": ["a", "b"]}
    saved.set_expiry(600)
    saved.save()
    with capture_queries() as queries:
        loaded = SessionStore(saved.session_key)
        assert loaded["note"] == {"pipeline": 3, "seen": ["a", "b"]}
    assert len(queries) == 1 and queries.sql[0].startswith('SELECT session_data, expire_date FROM "django_session"')
    assert loaded.load() == DjangosStore(saved.session_key).load()  # the expiry it carries included


@pytest.mark.parametrize("key", ["expired", "unknown", "deleted"])
def test_an_expired_unknown_or_deleted_session_is_empty_and_gets_a_new_key(org, key):
    saved = DjangosStore()
    saved["note"] = 1
    saved.save()
    if key == "expired":
        Session.objects.filter(pk=saved.session_key).update(expire_date=timezone.now() - timedelta(seconds=1))
    elif key == "deleted":
        Session.objects.filter(pk=saved.session_key).delete()
    given = saved.session_key if key != "unknown" else "x" * 32
    for store in (SessionStore(given), DjangosStore(given)):
        assert store.load() == {} and store.session_key is None


def test_a_page_is_served_to_a_live_session_and_refused_to_an_expired_one(client, org):
    client.force_login(org.rep)
    assert client.get(PAGE).status_code == 200
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    response = client.get(PAGE)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
