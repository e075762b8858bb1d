"""What the load test's virtual users do: a sales team's day, as browser users (session login) and integrations
(API tokens), reps and managers. Run by `tools.loadtest.runner`; it reads two variables:

- `LOADTEST_CREDENTIALS`: the JSON file written by `tools.loadtest.prepare` (who to log in as, with their token);
- `LOADTEST_RESULTS`: where to write every request's timing and outcome when locust stops.

Every request is timed under a fixed name (the request type of the table). A 412 from a move is the correct answer
to a stale `If-Match` when two users move the same deal: it is counted apart, the deal refetched and the move tried
once more. Anything else at or above 400, and any connection error, is an error.

The app runs with production settings behind no proxy: the users send what a TLS-terminating proxy would add
(`X-Forwarded-Proto: https`) and keep the secure cookies the app sets although the loopback hop is plain HTTP.
"""

import itertools
import json
import os
import random
import re
from collections import defaultdict
from datetime import date, timedelta
from html import unescape
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path

from locust import HttpUser, between, events, task

# The proxy's TLS ends before the loopback hop: the client sends the app's Secure cookies over it, as a browser does
# over the https connection to the proxy. (requests copies cookies into jars of the default policy, so the policy
# itself is taught, in this load-generator process only.)
DefaultCookiePolicy.return_ok_secure = lambda self, cookie, request: True

CREDENTIALS = json.loads(Path(os.environ["LOADTEST_CREDENTIALS"]).read_text())
RESULTS_PATH = os.environ["LOADTEST_RESULTS"]
# Each virtual user takes the next demo user in turn, so reps and managers of every team are on at once.
_next_credentials = itertools.count()

CARD = re.compile(r'data-deal-id="(\d+)" data-stage-id="(\d+)" data-version="(\d+)"')
LOAD_MORE = re.compile(r'class="more" hx-get="([^"]+)"')
ACTIVITY_KINDS = ["call", "email", "meeting", "note"]


# --- Results -----------------------------------------------------------------------------------------------------

_timings: dict[str, list[float]] = defaultdict(list)
_errors: dict[str, int] = defaultdict(int)
_precondition_failed: dict[str, int] = defaultdict(int)
_succeeded: dict[str, int] = defaultdict(int)
_error_samples: list[str] = []


@events.request.add_listener
def _record(request_type, name, response_time, exception, response=None, **_kwargs):
    _timings[name].append(response_time)
    if exception is not None:
        _errors[name] += 1
        if len(_error_samples) < 20:
            status = getattr(response, "status_code", None)
            body = (getattr(response, "text", "") or "")[:300]
            _error_samples.append(f"{name}: {status or type(exception).__name__} {exception} {body}".strip())
    elif getattr(response, "status_code", None) == 412:
        _precondition_failed[name] += 1
    else:
        _succeeded[name] += 1


@events.user_error.add_listener
def _record_task_crash(user_instance, exception, tb, **_kwargs):
    # A task that raised (an answer of the wrong shape, say) did not do its work: that is an error of the run too.
    _errors["task raised"] += 1
    _timings.setdefault("task raised", [])
    if len(_error_samples) < 20:
        _error_samples.append(f"task raised: {type(exception).__name__}: {exception}")


@events.quitting.add_listener
def _write_results(environment, **_kwargs):
    results = {
        name: {
            "times_ms": times,
            "errors": _errors[name],
            "precondition_failed": _precondition_failed[name],
            "succeeded": _succeeded[name],
        }
        for name, times in _timings.items()
    }
    Path(RESULTS_PATH).write_text(json.dumps({"requests": results, "error_samples": _error_samples}))


# --- The users ---------------------------------------------------------------------------------------------------


class CrmUser(HttpUser):
    """What browser users and integrations share: who they are, the stages they know, and moving a deal."""

    abstract = True
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.me = CREDENTIALS[next(_next_credentials) % len(CREDENTIALS)]
        self.client.headers["X-Forwarded-Proto"] = "https"
        self.log_in()
        stages = self.client.get("/api/v1/stages/?page_size=200", name="API stages (setup)").json()["results"]
        self.stages_by_pipeline: dict[int, list[dict]] = defaultdict(list)
        for stage in stages:
            self.stages_by_pipeline[stage["pipeline"]].append(stage)
        self.pipelines = sorted(self.stages_by_pipeline)
        self.open_stages = {stage["id"] for stage in stages if stage["kind"] == "open"}
        self.deal_ids: list[int] = []
        self.open_deal_ids: list[int] = []
        self.versions: dict[int, int] = {}  # deal id -> the version this user last saw

    def log_in(self) -> None:
        raise NotImplementedError

    def page(self, path: str, *, name: str):
        """GET `path`, which must answer 200 itself: a redirect (to the login page, say) is an error too."""
        with self.client.get(path, name=name, allow_redirects=False, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{path} answered {response.status_code}")
        return response

    def write_headers(self) -> dict[str, str]:
        """Headers an API write needs besides If-Match (session users add their CSRF token)."""
        return {}

    def _move_body(self, deal: dict) -> dict | None:
        """A move of `deal` to a neighbouring open stage, with what that stage requires filled in; None if none fits."""
        stages = self.stages_by_pipeline[deal["pipeline"]]
        current = next((s for s in stages if s["id"] == deal["stage"]), None)
        if current is None or current["kind"] != "open":
            return None
        candidates = [s for s in stages if s["kind"] == "open" and abs(s["order"] - current["order"]) == 1]
        random.shuffle(candidates)
        fillers = {
            "amount": f"{random.randint(5, 200) * 500}.00",
            "expected_close_date": (date.today() + timedelta(days=random.randint(10, 120))).isoformat(),
            "budget": f"{random.randint(5, 200) * 500}.00",
            "authority": "Head of sales",
            "need": "Pipeline visibility",
            "timeline": "This quarter",
        }
        for stage in candidates:
            missing = [name for name in stage["required_fields"] if deal.get(name) in (None, "")]
            if any(name not in fillers for name in missing):
                continue  # an organization or contact cannot be made up here
            return {"stage": stage["id"], **{name: fillers[name] for name in missing}}
        return None

    def move_deal(self, deal_id: int) -> None:
        """Move the deal with `If-Match` set to the version this user last saw of it (on the board, in a list), as
        a browser tab or an integration's cache does; on a 412 (someone moved it since) refetch and retry once."""
        seen_version = self.versions.get(deal_id)
        for _attempt in range(2):
            read = self.client.get(f"/api/v1/deals/{deal_id}/", name="API deal detail")
            if not read.ok:
                return
            body = self._move_body(read.json())
            if body is None:
                return
            etag = f'W/"{seen_version}"' if seen_version is not None else read.headers["ETag"]
            with self.client.post(
                f"/api/v1/deals/{deal_id}/move/",
                json=body,
                headers={"If-Match": etag, **self.write_headers()},
                name="API deal move",
                catch_response=True,
            ) as response:
                if response.status_code == 412:
                    response.success()
                    seen_version = None  # the retry goes with what it just read
                    continue
                if response.ok:
                    self.versions[deal_id] = response.json()["version"]
            return


class BrowserUser(CrmUser):
    """A rep or manager in the browser: the board (filtered, scrolled), deal pages, moves, logging activities,
    the leads list and the dashboard."""

    weight = 3

    def log_in(self) -> None:
        self.page("/login/", name="login page")
        with self.client.post(
            "/login/",
            data={
                "username": self.me["username"],
                "password": self.me["password"],
                "csrfmiddlewaretoken": self.client.cookies.get("csrftoken", ""),
            },
            headers=self.write_headers(),
            name="login (session)",
            allow_redirects=False,
            catch_response=True,
        ) as response:
            # A refused login answers 200 with the form again; only a redirect means signed in.
            if response.status_code != 302:
                response.failure(f"login as {self.me['username']} answered {response.status_code}, not a redirect")

    def write_headers(self) -> dict[str, str]:
        # The browser's CSRF token, and the Origin a browser sends on a secure form post.
        return {"X-CSRFToken": self.client.cookies.get("csrftoken", ""), "Origin": self.host.replace("http:", "https:")}

    def _remember_cards(self, html: str) -> None:
        cards = [tuple(map(int, found)) for found in CARD.findall(html)]
        if cards:
            self.deal_ids = [deal_id for deal_id, _stage, _version in cards]
            self.open_deal_ids = [deal_id for deal_id, stage, _version in cards if stage in self.open_stages]
            self.versions.update((deal_id, version) for deal_id, _stage, version in cards)

    @task(6)
    def board(self) -> None:
        pipeline = random.choice(self.pipelines)
        response = self.page(f"/board/{pipeline}/", name="board")
        self._remember_cards(response.text)
        more = LOAD_MORE.findall(response.text)
        if more:
            self.page(unescape(random.choice(more)), name="board load more")

    @task(2)
    def board_filtered(self) -> None:
        pipeline = random.choice(self.pipelines)
        query = random.choice([f"owner={self.me['user_id']}", "q=a", "q=inc"])
        response = self.page(f"/board/{pipeline}/?{query}", name="board filtered")
        self._remember_cards(response.text)

    @task(4)
    def deal_page(self) -> None:
        if self.deal_ids:
            self.page(f"/deals/{random.choice(self.deal_ids)}/", name="deal page")

    @task(3)
    def move(self) -> None:
        if self.open_deal_ids:
            self.move_deal(random.choice(self.open_deal_ids))

    @task(2)
    def log_activity(self) -> None:
        if not self.deal_ids:
            return
        with self.client.post(
            f"/deals/{random.choice(self.deal_ids)}/activities/",
            data={
                "kind": random.choice(ACTIVITY_KINDS),
                "subject": "Followed up (load test)",
                "note": "",
                "due_at": "",
                "csrfmiddlewaretoken": self.client.cookies.get("csrftoken", ""),
            },
            # As the deal page's form sends it: the answer is the refreshed timeline, with a toast on success.
            headers={**self.write_headers(), "HX-Request": "true"},
            name="deal activity log (form)",
            catch_response=True,
        ) as response:
            if response.ok and "Activity logged." not in response.text:
                response.failure("the activity form was refused")

    @task(1)
    def leads(self) -> None:
        self.page("/leads/", name="leads page")

    @task(2)
    def dashboard(self) -> None:
        self.page("/dashboard/", name="dashboard")


class IntegrationUser(CrmUser):
    """An integration with a rep's or manager's API token: filtered deal lists, leads, moves with If-Match,
    activities and the metrics endpoints."""

    weight = 2

    def log_in(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {self.me['token']}"

    @task(5)
    def deals(self) -> None:
        pipeline = random.choice(self.pipelines)
        query = random.choice(
            [
                f"pipeline={pipeline}&status=open&page_size=50",
                f"pipeline={pipeline}&stage={random.choice(self.stages_by_pipeline[pipeline])['id']}&page_size=50",
                f"owner={self.me['user_id']}&ordering=-updated_at",
                "amount_min=10000&ordering=-amount",
            ]
        )
        response = self.client.get(f"/api/v1/deals/?{query}", name="API deals list (filtered)")
        if response.ok:
            open_deals = [deal for deal in response.json()["results"] if deal["status"] == "open"]
            self.deal_ids = [deal["id"] for deal in open_deals] or self.deal_ids
            self.versions.update((deal["id"], deal["version"]) for deal in open_deals)

    @task(3)
    def leads(self) -> None:
        status = random.choice(["", "new", "mql", "sql"])
        self.client.get(f"/api/v1/leads/?status={status}&page_size=50", name="API leads list")

    @task(3)
    def move(self) -> None:
        if self.deal_ids:
            self.move_deal(random.choice(self.deal_ids))

    @task(2)
    def log_activity(self) -> None:
        if not self.deal_ids:
            return
        self.client.post(
            "/api/v1/activities/",
            json={
                "kind": random.choice(ACTIVITY_KINDS),
                "subject": "Synced call (load test)",
                "deal": random.choice(self.deal_ids),
            },
            name="API activity create",
        )

    @task(3)
    def metrics(self) -> None:
        name, path = random.choice(
            [
                ("API forecast", "/api/v1/forecast/"),
                ("API metrics win-rates", "/api/v1/metrics/win-rates/?group=owner"),
                ("API metrics funnel", "/api/v1/metrics/funnel/"),
                ("API metrics stale-deals", "/api/v1/metrics/stale-deals/"),
            ]
        )
        self.client.get(path, name=name)
