"""Twenty writers on one deal at once, through a real gunicorn server, each reading the ETag and writing with
If-Match, retrying on 412: no update is lost, and the stage history holds exactly the successful moves, in order.

Each writer makes two writes: a move to another stage, and an increment of the amount (a counter: a lost update
would show as a missing unit). tests/api/test_concurrency.py covers the same rule in-process with two writers.
"""

import itertools
import threading
import time
from collections import Counter
from decimal import Decimal

import pytest

from accounts.services import create_api_token
from pipeline.models import Deal, StageChange
from tests.factories import make_qualified_deal
from tests.faults.conftest import REQUEST_TIMEOUT, api_session, app_env, committed_database_url, start_web

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WRITERS = 20
MAX_ATTEMPTS = 300  # per writer: a bound, far above what contention needs
DEADLINE_SECONDS = 180


def test_twenty_writers_with_if_match_lose_nothing(org, pipeline, processes, settings):
    deal = make_qualified_deal(owner=org.rep, pipeline=pipeline, title="Contended")
    open_stages = list(pipeline.stages.filter(kind="open").order_by("order").values_list("pk", flat=True))
    _, token = create_api_token(user=org.rep, name="writers")
    base_url, web = start_web(processes, app_env(database_url=committed_database_url(), redis_url=settings.REDIS_URL))
    deal_url = f"{base_url}/api/v1/deals/{deal.pk}/"

    barrier = threading.Barrier(WRITERS)
    deadline = time.monotonic() + DEADLINE_SECONDS
    successes: list[dict] = []  # one per successful write, with the version it produced
    statuses: Counter = Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def writer(index: int) -> None:
        api = api_session(token)
        pending = ["move", "increment"] if index % 2 else ["increment", "move"]
        barrier.wait(timeout=60)
        for attempt in range(MAX_ATTEMPTS):
            if not pending or time.monotonic() > deadline:
                break
            current = api.get(deal_url, timeout=REQUEST_TIMEOUT)
            body, etag = current.json(), current.headers["ETag"]
            if pending[0] == "move":
                others = [stage for stage in open_stages if stage != body["stage"]]
                target = others[(index + attempt) % len(others)]
                response = api.post(
                    f"{deal_url}move/", json={"stage": target}, headers={"If-Match": etag}, timeout=REQUEST_TIMEOUT
                )
                write = {"kind": "move", "from": body["stage"], "to": target}
            else:
                amount = str(Decimal(body["amount"]) + 1)
                response = api.patch(deal_url, json={"amount": amount}, headers={"If-Match": etag}, timeout=15)
                write = {"kind": "increment", "amount": amount}
            with lock:
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    successes.append({**write, "writer": index, "version": response.json()["version"]})
            if response.status_code == 200:
                pending.pop(0)
            elif response.status_code != 412:
                with lock:
                    errors.append(f"writer {index}: {response.status_code} {response.text[:300]}")
                return
        if pending:
            with lock:
                errors.append(f"writer {index} gave up with {pending} left")

    started = time.monotonic()
    threads = [threading.Thread(target=writer, args=(index,)) for index in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE_SECONDS + 30)
    elapsed = time.monotonic() - started

    assert not any(thread.is_alive() for thread in threads)
    assert not errors, (errors, web.log())
    assert set(statuses) <= {200, 412}, statuses
    moves = sorted((w for w in successes if w["kind"] == "move"), key=lambda w: w["version"])
    increments = [w for w in successes if w["kind"] == "increment"]
    assert len(moves) == len(increments) == WRITERS

    # No lost update: every successful write made its own version, and the last state is all of them.
    final = Deal.objects.get(pk=deal.pk)
    assert sorted(w["version"] for w in successes) == list(range(deal.version + 1, deal.version + 2 * WRITERS + 1))
    assert final.version == deal.version + 2 * WRITERS
    assert final.amount == deal.amount + WRITERS
    assert final.stage_id == moves[-1]["to"]

    # The history: the creation, then one row per successful move, in the order of their versions, each from
    # where the previous one left the deal.
    history = list(StageChange.objects.filter(deal=deal).order_by("id").values_list("from_stage", "to_stage"))
    assert history[1:] == [(w["from"], w["to"]) for w in moves]
    assert all(later[0] == earlier[1] for earlier, later in itertools.pairwise(history))
    assert len(history) == WRITERS + 1

    print(
        f"\nconcurrent writers: {WRITERS} writers, {len(successes)} successful writes ({len(moves)} moves, "
        f"{len(increments)} increments), {statuses[412]} answered 412 and retried, "
        f"{sum(statuses.values())} writes in all, in {elapsed:.1f} s; version {deal.version} → {final.version}, "
        f"amount {deal.amount} → {final.amount}, {len(history)} history rows"
    )
