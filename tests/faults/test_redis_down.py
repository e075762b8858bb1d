"""Redis killed under a running app (gunicorn, a Celery worker, Celery beat), then started again, empty.

While it is down, pages and API reads and writes keep working (no 5xx), the dashboard and the metrics API show the
numbers of the last recompute and how old they are; once it is back, the recompute comes again by itself (beat's
schedule, which the worker picks up after reconnecting) and the numbers include every write of the outage.
"""

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.db import connection

from accounts.services import create_api_token
from forecasting.models import MetricsRun, RunStatus
from pipeline.models import Activity, Deal, StageChange
from tests.factories import make_qualified_deal, stage
from tests.faults.conftest import (
    CSRF_SECRET,
    REQUEST_TIMEOUT,
    api_session,
    app_env,
    browser_session,
    committed_database_url,
    free_port,
    logs_of,
    start_beat,
    start_redis,
    start_web,
    start_worker,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Short, so that the test sees several scheduled recomputes; production's default is 300 s.
RECOMPUTE_SECONDS = 5
IMPORTED_TITLES = ["Imported one", "Imported two"]
IMPORT_CSV = (
    "Deal,Deal Stage,Sales Agent,Close Value\n"
    f"{IMPORTED_TITLES[0]},Qualification,rep,1000\n"
    f"{IMPORTED_TITLES[1]},Qualification,rep,50\n"
)
WRITES = {"api create", "page create", "page activity", "api move", "page plan next step", "page move"}


def latest_run() -> MetricsRun | None:
    return MetricsRun.objects.filter(status=RunStatus.COMPLETE).order_by("-computed_at", "-id").first()


def database_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def stale_deal_ids(admin_api: requests.Session, base_url: str) -> tuple[dict, set[int]]:
    body = admin_api.get(f"{base_url}/api/v1/metrics/stale-deals/", timeout=REQUEST_TIMEOUT).json()
    return body, {row["deal_id"] for row in body["results"]}


def post_import(api: requests.Session, base_url: str) -> requests.Response:
    """A deals CSV for a worker (IMPORT_INLINE_MAX_SIZE is 0 in these processes)."""
    return api.post(
        f"{base_url}/api/v1/imports/",
        data={"kind": "deals"},
        files={"file": ("deals.csv", IMPORT_CSV, "text/csv")},
        timeout=REQUEST_TIMEOUT,
    )


def test_redis_down_browsing_and_writing_work_and_metrics_catch_up(org, pipeline, processes, tmp_path):
    won_over_api = make_qualified_deal(owner=org.rep, pipeline=pipeline, title="Won during the outage")
    planned_in_page = make_qualified_deal(owner=org.rep, pipeline=pipeline, title="Next step planned")
    moved_in_page = make_qualified_deal(owner=org.rep, pipeline=pipeline, title="Moved in a page")
    _, rep_token = create_api_token(user=org.rep, name="faults")
    _, admin_token = create_api_token(user=org.admin, name="faults")
    rep_api, admin_api = api_session(rep_token), api_session(admin_token)
    rep_browser, admin_browser = browser_session(org.rep), browser_session(org.admin)

    redis_port = free_port()
    redis = start_redis(processes, redis_port)
    env = app_env(
        database_url=committed_database_url(),
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        METRICS_RECOMPUTE_ON_CHANGE="true",  # as in production: every write also tries to queue a recompute
        METRICS_DEBOUNCE_SECONDS="1",
        METRICS_RECOMPUTE_SECONDS=str(RECOMPUTE_SECONDS),
        WORKER_HEARTBEAT_SECONDS="2",
        IMPORT_INLINE_MAX_SIZE="0",  # every import goes through the queue
        MEDIA_ROOT=str(tmp_path / "media"),  # shared by the web process and the worker
    )
    base_url, web = start_web(processes, env)
    worker = start_worker(processes, env)
    beat = start_beat(processes, env, tmp_path / "beat-schedule")
    logs = logs_of(redis, web, worker, beat)

    # Before: a first scheduled recompute sees the three open deals, none with a next step.
    first_deals = {won_over_api.pk, planned_in_page.pk, moved_in_page.pk}
    wait_for(lambda: stale_deal_ids(admin_api, base_url)[1] == first_deals, timeout=90, what="a recompute", logs=logs)
    before_outage = latest_run()

    redis.kill()
    outage_started = time.monotonic()
    answers: list[tuple[str, requests.Response]] = []

    def record(name: str, response: requests.Response) -> requests.Response:
        answers.append((name, response))
        return response

    due = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    round_number = -1
    # Long enough to miss three scheduled recomputes, so that the numbers turn out of date.
    while (round_number := round_number + 1) < 2 or time.monotonic() - outage_started < 3 * RECOMPUTE_SECONDS:
        for name, path in [
            ("page board", "/board/"),
            ("page deal", f"/deals/{planned_in_page.pk}/"),
            ("page dashboard", "/dashboard/"),
            ("page leads", "/leads/"),
            ("page activities", "/activities/"),
        ]:
            record(name, rep_browser.get(base_url + path, timeout=REQUEST_TIMEOUT))
        record("api deals", rep_api.get(f"{base_url}/api/v1/deals/", timeout=REQUEST_TIMEOUT))
        record("api metrics", admin_api.get(f"{base_url}/api/v1/metrics/stale-deals/", timeout=REQUEST_TIMEOUT))
        record("admin dashboard", admin_browser.get(f"{base_url}/dashboard/", timeout=REQUEST_TIMEOUT))
        record("healthz", requests.get(f"{base_url}/healthz", timeout=REQUEST_TIMEOUT))
        record(
            "api create",
            rep_api.post(f"{base_url}/api/v1/deals/", json={"title": f"API outage {round_number}"}, timeout=15),
        )
        record(
            "page create",
            rep_browser.post(
                f"{base_url}/board/{pipeline.pk}/deals/new/",
                data={
                    "title": f"Page outage {round_number}",
                    "owner": org.rep.pk,
                    "currency": "USD",
                    "stage": stage(pipeline, "Prospecting").pk,
                    "csrfmiddlewaretoken": CSRF_SECRET,
                },
                timeout=REQUEST_TIMEOUT,
            ),
        )
        record(
            "page activity",
            rep_browser.post(
                f"{base_url}/deals/{moved_in_page.pk}/activities/",
                data={"kind": "call", "subject": f"Call {round_number}", "csrfmiddlewaretoken": CSRF_SECRET},
                timeout=REQUEST_TIMEOUT,
            ),
        )
        record(
            "recompute button",
            admin_browser.post(
                f"{base_url}/dashboard/recompute/", data={"csrfmiddlewaretoken": CSRF_SECRET}, timeout=15
            ),
        )
        time.sleep(0.5)
    won = record(
        "api move",
        rep_api.post(
            f"{base_url}/api/v1/deals/{won_over_api.pk}/move/",
            json={"stage": stage(pipeline, "Won").pk},
            headers={"If-Match": f'W/"{won_over_api.version}"'},
            timeout=REQUEST_TIMEOUT,
        ),
    )
    record(
        "page plan next step",
        rep_browser.post(
            f"{base_url}/deals/{planned_in_page.pk}/activities/",
            data={"kind": "meeting", "subject": "Demo", "due_at": due, "csrfmiddlewaretoken": CSRF_SECRET},
            timeout=REQUEST_TIMEOUT,
        ),
    )
    record(
        "page move",
        rep_browser.post(
            f"{base_url}/deals/{moved_in_page.pk}/move/",
            data={"stage": stage(pipeline, "Discovery").pk, "csrfmiddlewaretoken": CSRF_SECRET},
            timeout=REQUEST_TIMEOUT,
        ),
    )
    queue_refused = admin_api.post(f"{base_url}/api/v1/metrics/recompute/", timeout=REQUEST_TIMEOUT)
    import_refused = record("api import", post_import(rep_api, base_url))
    outage_writes_done = database_now()
    outage_seconds = time.monotonic() - outage_started

    # Nothing failed; every write landed.
    statuses = Counter((name, response.status_code) for name, response in answers)
    assert all(response.status_code < 500 for _, response in answers), (statuses, logs())
    assert all(response.status_code in (200, 201) for _, response in answers), statuses  # redirects followed
    assert won.json()["stage"] == stage(pipeline, "Won").pk
    assert queue_refused.status_code == 503 and "task queue" in queue_refused.json()["detail"]  # said, not hidden
    assert import_refused.json()["status"] == "failed"  # a file for a worker: it says it could not start
    report = rep_api.get(f"{base_url}/api/v1/imports/{import_refused.json()['id']}/report/", timeout=15).json()
    assert report["results"][0]["message"].startswith("The task queue is unavailable")
    assert not Deal.objects.filter(title__in=IMPORTED_TITLES).exists()
    rounds = round_number
    assert Deal.objects.filter(title__startswith="API outage").count() == rounds
    assert Deal.objects.filter(title__startswith="Page outage").count() == rounds
    assert Activity.objects.filter(deal=moved_in_page).count() == rounds
    assert StageChange.objects.filter(deal=moved_in_page).count() == 2

    # The numbers during the outage were those of the last recompute, and said how old they were.
    for name, response in answers:
        if name == "api metrics":
            body = response.json()
            assert datetime.fromisoformat(body["computed_at"]) == before_outage.computed_at
            assert body["age_seconds"] is not None
        elif name == "admin dashboard":
            assert f'datetime="{before_outage.computed_at.isoformat()}"' in response.text
            assert "Numbers as of" in response.text
        elif name == "healthz":
            assert response.json()["database"] == "ok" and response.json()["broker"].startswith("error")
    last_metrics = [response.json() for name, response in answers if name == "api metrics"][-1]
    assert last_metrics["out_of_date"] is True and last_metrics["age_seconds"] > 2 * RECOMPUTE_SECONDS
    last_dashboard = [response.text for name, response in answers if name == "admin dashboard"][-1]
    assert "Out of date: the scheduled recompute has not run" in last_dashboard

    # Redis back, empty: no manual step, and the numbers catch up with every write of the outage.
    restarted = time.monotonic()
    redis = start_redis(processes, redis_port, name="redis-again")
    logs = logs_of(redis, web, worker, beat)
    open_deals = set(
        Deal.objects.filter(stage__kind="open", pipeline=pipeline)
        .exclude(pk=planned_in_page.pk)
        .values_list("pk", flat=True)
    )
    assert len(open_deals) == 2 * rounds + 1

    def caught_up() -> dict | None:
        body, stale = stale_deal_ids(admin_api, base_url)
        return body if stale == open_deals else None

    body = wait_for(caught_up, timeout=120, what="the metrics to include the outage's writes", logs=logs)
    caught_up_seconds = time.monotonic() - restarted
    assert datetime.fromisoformat(body["computed_at"]) > outage_writes_done
    assert body["out_of_date"] is False
    month = datetime.now(UTC).strftime("%Y-%m")
    win_rates = admin_api.get(f"{base_url}/api/v1/metrics/win-rates/", params={"period": month}, timeout=15).json()
    assert [row["won"] for row in win_rates["results"]] == [1]
    assert worker.alive() and beat.alive() and web.alive(), logs()
    imported = post_import(rep_api, base_url)
    assert imported.status_code == 202
    job_url = f"{base_url}/api/v1/imports/{imported.json()['id']}/"
    wait_for(
        lambda: rep_api.get(job_url, timeout=REQUEST_TIMEOUT).json()["status"] == "succeeded",
        timeout=60,
        what="the import queued after the outage",
        logs=logs,
    )
    assert Deal.objects.filter(title__in=IMPORTED_TITLES).count() == 2
    queued = admin_browser.post(
        f"{base_url}/dashboard/recompute/", data={"csrfmiddlewaretoken": CSRF_SECRET}, timeout=REQUEST_TIMEOUT
    )
    assert "Recompute queued" in queued.text  # the web process queues again, without a restart
    assert requests.get(f"{base_url}/healthz", timeout=REQUEST_TIMEOUT).json()["broker"] == "ok"

    writes = sum(1 for name, _ in answers if name in WRITES)
    print(
        f"\nredis down: {len(answers) + 1} requests during a {outage_seconds:.1f} s outage: "
        f"{dict(Counter(response.status_code for _, response in answers))} (+ the recompute API's deliberate "
        f"{queue_refused.status_code}); {writes} writes, all applied, and an import for a worker failed with its "
        f"message; metrics {last_metrics['age_seconds']} s old at the end of the outage; caught up "
        f"{caught_up_seconds:.1f} s after Redis came back (recompute every {RECOMPUTE_SECONDS} s)"
    )
