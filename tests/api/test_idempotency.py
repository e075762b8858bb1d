"""`Idempotency-Key` on API writes (SPEC §4): a retry gets the first answer and writes nothing more; the same key
with another request is a 422; a key still in flight a 409; keys expire after `IDEMPOTENCY_KEY_HOURS`."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from accounts.models import IdempotentRequest
from accounts.services import create_api_token, prune_idempotency_keys
from pipeline.models import Deal
from tests.api.conftest import client_for
from tests.factories import make_deal, stage

pytestmark = pytest.mark.django_db


def post(client, path: str, body: dict, key: str | None = "key-1"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(path, body, format="json", **headers)


def test_a_retried_create_answers_the_first_answer_and_creates_nothing_more(org, pipeline):
    client = client_for(org.rep)
    first = post(client, "/api/v1/deals/", {"title": "Acme renewal", "amount": "1200.00"})
    retried = post(client, "/api/v1/deals/", {"title": "Acme renewal", "amount": "1200.00"})
    assert first.status_code == retried.status_code == 201
    assert retried.json() == first.json() and retried["ETag"] == first["ETag"]
    assert retried["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert Deal.objects.filter(title="Acme renewal").count() == 1


def test_without_a_key_each_post_is_a_write_of_its_own(org, pipeline):
    client = client_for(org.rep)
    for _ in range(2):
        assert post(client, "/api/v1/deals/", {"title": "Twice"}, key=None).status_code == 201
    assert Deal.objects.filter(title="Twice").count() == 2


def test_the_same_key_with_another_body_is_422_and_writes_nothing(org, pipeline):
    client = client_for(org.rep)
    assert post(client, "/api/v1/deals/", {"title": "First"}).status_code == 201
    refused = post(client, "/api/v1/deals/", {"title": "Second"})
    assert refused.status_code == 422 and "another request" in refused.json()["detail"]
    assert not Deal.objects.filter(title="Second").exists()


def test_a_key_whose_first_request_is_still_running_is_409(org, pipeline):
    client = client_for(org.rep)
    body = {"title": "Running"}
    assert post(client, "/api/v1/deals/", body).status_code == 201
    IdempotentRequest.objects.update(completed_at=None, status_code=None)  # as while the first one runs
    refused = post(client, "/api/v1/deals/", body)
    assert refused.status_code == 409 and refused["Retry-After"] == "1"
    assert Deal.objects.filter(title="Running").count() == 1


def test_a_claim_whose_request_never_answered_is_taken_over(org, pipeline, settings):
    client = client_for(org.rep)
    body = {"title": "Abandoned"}
    IdempotentRequest.objects.create(
        user=org.rep, key="key-1", fingerprint="x" * 64, created_at=timezone.now() - timedelta(seconds=121)
    )
    settings.IDEMPOTENCY_ABANDONED_SECONDS = 120
    assert post(client, "/api/v1/deals/", body).status_code == 201
    assert post(client, "/api/v1/deals/", body)["Idempotent-Replayed"] == "true"


def test_keys_are_per_user(org, pipeline):
    body = {"title": "Mine"}
    assert post(client_for(org.rep), "/api/v1/deals/", body).status_code == 201
    other = post(client_for(org.teammate), "/api/v1/deals/", body)
    assert other.status_code == 201 and "Idempotent-Replayed" not in other
    assert Deal.objects.filter(title="Mine").count() == 2


def test_a_retried_move_and_patch_replay_their_answers(org, pipeline):
    client = client_for(org.rep)
    deal = make_deal(owner=org.rep, pipeline=pipeline, amount="100.00")
    move = {"stage": stage(pipeline, "Qualification").pk}
    first_move = post(client, f"/api/v1/deals/{deal.pk}/move/", move, key="move-1")
    assert first_move.status_code == 200
    assert post(client, f"/api/v1/deals/{deal.pk}/move/", move, key="move-1").json() == first_move.json()
    assert deal.stage_changes.count() == 2  # created, then one move

    patch = client.patch(f"/api/v1/deals/{deal.pk}/", {"amount": "250.00"}, format="json", HTTP_IDEMPOTENCY_KEY="p1")
    again = client.patch(f"/api/v1/deals/{deal.pk}/", {"amount": "250.00"}, format="json", HTTP_IDEMPOTENCY_KEY="p1")
    assert patch.status_code == 200 and again.json() == patch.json() and again["Idempotent-Replayed"] == "true"
    assert Deal.objects.get(pk=deal.pk).version == patch.json()["version"]


def test_a_refused_request_is_kept_too_so_its_retry_gets_the_same_400(org, pipeline):
    client = client_for(org.rep)
    first = post(client, "/api/v1/deals/", {"title": ""})
    retried = post(client, "/api/v1/deals/", {"title": ""})
    assert first.status_code == retried.status_code == 400 and retried.json() == first.json()
    assert retried["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("key", ["", "x" * 256])
def test_a_key_of_no_or_too_many_characters_is_400(org, pipeline, key):
    answer = post(client_for(org.rep), "/api/v1/deals/", {"title": "Keyed"}, key=key)
    assert answer.status_code == 400 and list(answer.json()) == ["Idempotency-Key"]
    assert not Deal.objects.exists()


def test_keys_expire_and_are_pruned(org, pipeline, settings):
    client = client_for(org.rep)
    assert post(client, "/api/v1/deals/", {"title": "Old"}).status_code == 201
    IdempotentRequest.objects.update(created_at=timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS + 1))
    again = post(client, "/api/v1/deals/", {"title": "Old"})
    assert again.status_code == 201 and "Idempotent-Replayed" not in again  # expired: a new request
    assert Deal.objects.filter(title="Old").count() == 2
    IdempotentRequest.objects.update(created_at=timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS + 1))
    assert prune_idempotency_keys() == 1 and not IdempotentRequest.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_write_once(org, pipeline, live_server):
    """Eight copies of one request released together: one deal, and every answer is the deal or a 409."""
    _token, raw = create_api_token(user=org.rep, name="retries")
    start = threading.Barrier(8)

    def send(_: int) -> requests.Response:
        start.wait()
        return requests.post(
            f"{live_server.url}/api/v1/deals/",
            json={"title": "Exactly once"},
            headers={"Authorization": f"Bearer {raw}", "Idempotency-Key": "burst"},
            timeout=30,
        )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    assert Deal.objects.filter(title="Exactly once").count() == 1
    created = {answer.json()["id"] for answer in answers if answer.status_code == 201}
    assert len(created) == 1
    assert {answer.status_code for answer in answers} <= {201, 409}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_prune_task_runs_on_a_real_worker(org, start_celery_worker):
    from accounts.tasks import prune_old_idempotency_keys

    IdempotentRequest.objects.create(
        user=org.rep, key="old", fingerprint="f" * 64, created_at=timezone.now() - timedelta(hours=25)
    )
    IdempotentRequest.objects.create(user=org.rep, key="new", fingerprint="f" * 64, created_at=timezone.now())
    start_celery_worker()
    prune_old_idempotency_keys.delay()
    deadline = time.monotonic() + 60
    while IdempotentRequest.objects.count() > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(IdempotentRequest.objects.values_list("key", flat=True)) == ["new"]


def test_a_retried_upload_starts_one_import_and_another_file_under_the_key_is_422(org, pipeline, settings, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from pipeline.models import ImportJob

    settings.MEDIA_ROOT = tmp_path
    client = client_for(org.rep)

    def upload(text: str):
        file = SimpleUploadedFile("deals.csv", text.encode(), content_type="text/csv")
        return client.post(
            "/api/v1/imports/",
            {"file": file, "kind": "deals", "dry_run": "true"},
            format="multipart",
            HTTP_IDEMPOTENCY_KEY="import-1",
        )

    csv = "Deal,Sales Agent\nBig one,rep\n"
    first, retried = upload(csv), upload(csv)
    assert first.status_code == retried.status_code == 201, first.content
    assert retried.json()["id"] == first.json()["id"] and ImportJob.objects.count() == 1
    assert upload(csv + "Small one,rep\n").status_code == 422 and ImportJob.objects.count() == 1
