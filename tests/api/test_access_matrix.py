"""The access matrix of SPEC §7, generated from tables: every endpoint × every role answers as SPEC §2 says.

The subjects are records owned by `org.rep` (see `rep_records`). Who may see them: the rep, their manager and the
admin (and, when REP_VISIBILITY is "team", the rep's teammate, who still may not change them). Everyone else gets a
404, never a 403 that would confirm the record exists; anonymous requests and revoked tokens get a 401.
"""

from urllib.parse import quote

import pytest
from django.utils import timezone

from tests.factories import stage

pytestmark = pytest.mark.django_db

ROLES = ["rep", "teammate", "other_rep", "manager", "other_manager", "admin", "anonymous", "revoked_token"]
UNAUTHENTICATED = {"anonymous", "revoked_token"}


def sees(role: str, visibility: str) -> bool:
    return role in {"rep", "manager", "admin"} or (visibility == "team" and role == "teammate")


def edits(role: str) -> bool:
    return role in {"rep", "manager", "admin"}


# (endpoint, method, path, body, success status, kind). Paths and bodies are formatted with the subjects' ids.
# kind "read": 200 when the role sees the record, else 404. "write": success when it may change it, 403 when it
# only sees it, else 404.
RECORD_ENDPOINTS = [
    ("deal detail", "get", "/api/v1/deals/{deal}/", None, 200, "read"),
    ("deal history", "get", "/api/v1/deals/{deal}/history/", None, 200, "read"),
    ("deal changes", "get", "/api/v1/deals/{deal}/changes/", None, 200, "read"),
    ("deal update", "put", "/api/v1/deals/{deal}/", {"title": "Renamed"}, 200, "write"),
    ("deal partial update", "patch", "/api/v1/deals/{deal}/", {"title": "Renamed"}, 200, "write"),
    ("deal move", "post", "/api/v1/deals/{deal}/move/", {"stage": "{qualification}"}, 200, "write"),
    ("lead detail", "get", "/api/v1/leads/{lead}/", None, 200, "read"),
    ("lead update", "put", "/api/v1/leads/{lead}/", {"last_name": "Renamed"}, 200, "write"),
    ("lead partial update", "patch", "/api/v1/leads/{lead}/", {"score": 50}, 200, "write"),
    ("lead status", "post", "/api/v1/leads/{lead}/status/", {"status": "contacted"}, 200, "write"),
    ("lead convert", "post", "/api/v1/leads/{lead}/convert/", {}, 201, "write"),
    ("activity detail", "get", "/api/v1/activities/{activity}/", None, 200, "read"),
    ("activity update", "put", "/api/v1/activities/{activity}/", {"kind": "email", "subject": "Re"}, 200, "write"),
    ("activity partial update", "patch", "/api/v1/activities/{activity}/", {"subject": "Re"}, 200, "write"),
    ("activity complete", "post", "/api/v1/activities/{planned}/complete/", None, 200, "write"),
    ("organization detail", "get", "/api/v1/organizations/{organization}/", None, 200, "read"),
    ("organization update", "put", "/api/v1/organizations/{organization}/", {"name": "Renamed"}, 200, "write"),
    ("organization partial update", "patch", "/api/v1/organizations/{organization}/", {"name": "R"}, 200, "write"),
    ("contact detail", "get", "/api/v1/contacts/{contact}/", None, 200, "read"),
    ("contact update", "put", "/api/v1/contacts/{contact}/", {"last_name": "Renamed"}, 200, "write"),
    ("contact partial update", "patch", "/api/v1/contacts/{contact}/", {"last_name": "R"}, 200, "write"),
    ("user detail", "get", "/api/v1/users/{rep}/", None, 200, "read"),
]

# Lists, with the filters and search that must not leak: the rep's record is listed exactly for those who see it.
LIST_ENDPOINTS = [
    ("deals", "/api/v1/deals/?page_size=200", "deal"),
    ("deals by owner", "/api/v1/deals/?owner={rep}", "deal"),
    ("deals by team", "/api/v1/deals/?team={team}", "deal"),
    ("deals by organization", "/api/v1/deals/?organization={organization}", "deal"),
    ("deals by search", "/api/v1/deals/?search=Deal%20of%20rep", "deal"),
    ("deals by external id", "/api/v1/deals/?external_id=ext-deal-of-rep", "deal"),
    ("deals ordered by amount", "/api/v1/deals/?ordering=-amount", "deal"),
    ("deals as of an instant", "/api/v1/deals/?as_of={as_of}&page_size=200", "deal"),
    ("deals as of an instant by owner then", "/api/v1/deals/?as_of={as_of}&owner={rep}", "deal"),
    ("deals as of an instant by team then", "/api/v1/deals/?as_of={as_of}&team={team}", "deal"),
    ("leads", "/api/v1/leads/", "lead"),
    ("leads by owner and search", "/api/v1/leads/?owner={rep}&search=Lead%20of%20rep", "lead"),
    ("activities", "/api/v1/activities/", "activity"),
    ("activities of the deal", "/api/v1/activities/?deal={deal}", "activity"),
    ("organizations", "/api/v1/organizations/?search=Acme", "organization"),
    ("contacts", "/api/v1/contacts/?organization={organization}", "contact"),
    ("users", "/api/v1/users/?team={team}", "rep"),
]

# Readable by everyone signed in.
SHARED_ENDPOINTS = [
    ("pipelines", "/api/v1/pipelines/"),
    ("pipeline detail", "/api/v1/pipelines/{pipeline}/"),
    ("stages", "/api/v1/stages/?pipeline={pipeline}"),
    ("stage detail", "/api/v1/stages/{qualification}/"),
    ("lost reasons", "/api/v1/lost-reasons/"),
    ("teams", "/api/v1/teams/"),
    ("team detail", "/api/v1/teams/{team}/"),
    ("me", "/api/v1/me/"),
    ("tokens", "/api/v1/tokens/"),
    ("events", "/api/v1/events/"),
]

# Writes naming the rep's records by id: accepted only from those who may see (or, for owners, change) them;
# anyone else gets the 404 of an id that does not exist.
NESTED_WRITES = [
    ("deal for the rep's organization", "/api/v1/deals/", {"title": "T", "organization": "{organization}"}, sees),
    ("deal with the rep's contact", "/api/v1/deals/", {"title": "T", "contact": "{contact}"}, sees),
    ("deal owned by the rep", "/api/v1/deals/", {"title": "T", "owner": "{rep}"}, lambda r, v: edits(r)),
    ("lead owned by the rep", "/api/v1/leads/", {"last_name": "L", "owner": "{rep}"}, lambda r, v: edits(r)),
    (
        "activity on the rep's deal",
        "/api/v1/activities/",
        {"kind": "call", "subject": "S", "deal": "{deal}"},
        lambda r, v: edits(r),
    ),
]


# Configuration writes: admins only; everyone else signed in gets 403 (the configuration is visible to them).
ADMIN_WRITES = [
    (
        "create pipeline",
        "post",
        "/api/v1/pipelines/",
        {
            "name": "P2",
            "stages": [
                {"name": "Open", "probability": 10},
                {"name": "W", "kind": "won", "probability": 100},
                {"name": "L", "kind": "lost", "probability": 0},
            ],
        },
        201,
    ),
    ("rename pipeline", "patch", "/api/v1/pipelines/{pipeline}/", {"name": "Renamed"}, 200),
    ("create stage", "post", "/api/v1/stages/", {"pipeline": "{pipeline}", "name": "S", "probability": 5}, 201),
    ("change stage", "patch", "/api/v1/stages/{qualification}/", {"probability": 25}, 200),
    ("create lost reason", "post", "/api/v1/lost-reasons/", {"name": "Budget cut"}, 201),
    ("retire lost reason", "patch", "/api/v1/lost-reasons/{lost_reason}/", {"is_active": False}, 200),
    ("create team", "post", "/api/v1/teams/", {"name": "North"}, 201),
    ("rename team", "put", "/api/v1/teams/{team}/", {"name": "East Coast"}, 200),
]


@pytest.fixture
def ids(org, pipeline, rep_records, lost_reason):
    r = rep_records
    r.deal.external_id = "ext-deal-of-rep"
    r.deal.save(update_fields=["external_id"])
    return {
        "deal": r.deal.pk,
        "lead": r.lead.pk,
        "activity": r.activity.pk,
        "planned": r.planned.pk,
        "organization": r.organization.pk,
        "contact": r.contact.pk,
        "rep": org.rep.pk,
        "team": org.team.pk,
        "pipeline": pipeline.pk,
        "qualification": stage(pipeline, "Qualification").pk,
        "lost_reason": lost_reason.pk,
        "as_of": quote(timezone.now().isoformat()),
    }


def fill(template, ids):
    """`template` (a path or a body) with its "{name}" placeholders replaced by the subjects' ids."""
    if template is None:
        return None
    if isinstance(template, dict):
        return {key: fill(value, ids) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(item, ids) for item in template]
    if isinstance(template, str) and template.startswith("{") and template.endswith("}"):
        return ids[template[1:-1]]
    return template.format(**ids) if isinstance(template, str) else template


def expected_status(role: str, visibility: str, success: int, kind: str) -> int:
    if role in UNAUTHENTICATED:
        return 401
    if kind == "read":
        return success if sees(role, visibility) else 404
    if edits(role):
        return success
    return 403 if sees(role, visibility) else 404


@pytest.mark.parametrize("visibility", ["own", "team"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("endpoint", "method", "path", "body", "success", "kind"), RECORD_ENDPOINTS, ids=[e[0] for e in RECORD_ENDPOINTS]
)
def test_record_endpoint_answers_by_role(
    settings, api, ids, visibility, role, endpoint, method, path, body, success, kind
):
    settings.REP_VISIBILITY = visibility
    response = getattr(api(role), method)(fill(path, ids), fill(body, ids), format="json")
    assert response.status_code == expected_status(role, visibility, success, kind), response.content


@pytest.mark.parametrize("visibility", ["own", "team"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("endpoint", "path", "subject"), LIST_ENDPOINTS, ids=[e[0] for e in LIST_ENDPOINTS])
def test_list_shows_the_record_exactly_to_those_who_see_it(
    settings, api, ids, visibility, role, endpoint, path, subject
):
    settings.REP_VISIBILITY = visibility
    response = api(role).get(fill(path, ids))
    if role in UNAUTHENTICATED:
        assert response.status_code == 401
        return
    assert response.status_code == 200, response.content
    listed = {row["id"] for row in response.json()["results"]}
    assert (ids[subject] in listed) == sees(role, visibility)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("endpoint", "path"), SHARED_ENDPOINTS, ids=[e[0] for e in SHARED_ENDPOINTS])
def test_shared_endpoint_answers_everyone_signed_in(api, ids, role, endpoint, path):
    response = api(role).get(fill(path, ids))
    assert response.status_code == (401 if role in UNAUTHENTICATED else 200), response.content


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("endpoint", "path", "body", "allowed"), NESTED_WRITES, ids=[e[0] for e in NESTED_WRITES])
def test_write_naming_a_record_needs_access_to_it(api, ids, role, endpoint, path, body, allowed):
    response = api(role).post(path, fill(body, ids), format="json")
    if role in UNAUTHENTICATED:
        assert response.status_code == 401
    elif allowed(role, "own"):
        assert response.status_code == 201, response.content
    else:
        assert response.status_code == 404, response.content
        field = next(name for name in body if name not in {"title", "last_name", "kind", "subject"})
        assert f"No {field} with id" in response.json()["detail"]


@pytest.mark.parametrize("role", ROLES)
def test_api_tokens_are_private_to_their_owner(org, api, role):
    from accounts.services import create_api_token

    token, _ = create_api_token(user=org.rep, name="rep's integration")
    client = api(role)
    detail = client.get(f"/api/v1/tokens/{token.pk}/")
    revoke = client.delete(f"/api/v1/tokens/{token.pk}/")
    expected = 401 if role in UNAUTHENTICATED else (200 if role == "rep" else 404)
    assert detail.status_code == expected
    assert revoke.status_code == (204 if role == "rep" else expected)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("endpoint", "method", "path", "body", "success"), ADMIN_WRITES, ids=[e[0] for e in ADMIN_WRITES]
)
def test_only_admins_change_the_configuration(api, ids, role, endpoint, method, path, body, success):
    response = getattr(api(role), method)(fill(path, ids), fill(body, ids), format="json")
    expected = 401 if role in UNAUTHENTICATED else success if role == "admin" else 403
    assert response.status_code == expected, response.content


# --- The event list and replay ----------------------------------------------------------------------------------
# An event is listed to whoever may see its record (an activity: whoever sees its owner's records or its deal's), as
# a subscription receives it; an event about no record (metrics.recomputed) to everyone signed in.


@pytest.fixture
def rep_events(org, rep_records, django_capture_on_commit_callbacks):
    """The events about the rep's records (a deal changed, a lead created, an activity the admin logged on the rep's
    deal), one about the other rep's lead and one about no record, by type: {type: event id}."""
    from datetime import UTC, datetime

    from pipeline import services
    from pipeline.webhooks.services import emit_metrics_recomputed

    with django_capture_on_commit_callbacks(execute=True):
        services.update_deal(deal=rep_records.deal, actor=org.rep, title="Deal of rep, renamed")
        services.create_lead(actor=org.rep, last_name="Another lead of rep")
        services.log_activity(actor=org.admin, kind="call", subject="Admin calls", deal=rep_records.deal)
    with django_capture_on_commit_callbacks(execute=True):
        services.create_lead(actor=org.other_rep, last_name="Lead of the other rep")
    from pipeline.webhooks.models import WebhookEvent

    events = {event.type: str(event.id) for event in WebhookEvent.objects.exclude(type="lead.created")}
    events["lead.created"] = str(
        WebhookEvent.objects.get(type="lead.created", data__last_name="Another lead of rep").id
    )
    events["other lead"] = str(WebhookEvent.objects.get(data__last_name="Lead of the other rep").id)
    events["metrics.recomputed"] = str(emit_metrics_recomputed(computed_at=datetime(2026, 11, 25, tzinfo=UTC)).id)
    return events


@pytest.mark.parametrize("visibility", ["own", "team"])
@pytest.mark.parametrize("role", ROLES)
def test_the_event_list_shows_an_event_exactly_to_those_who_see_its_record(
    settings, api, org, rep_events, visibility, role
):
    settings.REP_VISIBILITY = visibility
    response = api(role).get("/api/v1/events/?page_size=200")
    if role in UNAUTHENTICATED:
        assert response.status_code == 401
        return
    assert response.status_code == 200, response.content
    listed = {row["id"] for row in response.json()["results"]}
    for kind in ("deal.updated", "lead.created", "activity.created"):
        assert (rep_events[kind] in listed) == sees(role, visibility), kind
    sees_other_rep = role in {"other_rep", "other_manager", "admin"}
    assert (rep_events["other lead"] in listed) == sees_other_rep
    assert rep_events["metrics.recomputed"] in listed
    detail = api(role).get(f"/api/v1/events/{rep_events['deal.updated']}/")
    assert detail.status_code == (200 if sees(role, visibility) else 404)


@pytest.mark.parametrize("role", ROLES)
def test_a_webhook_replay_is_for_the_subscription_owner_only(settings, org, api, role):
    from pipeline.webhooks.services import create_subscription

    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    subscription = create_subscription(owner=org.rep, url="http://127.0.0.1:9/in", events=["deal.created"])
    response = api(role).post(f"/api/v1/webhooks/{subscription.pk}/replay/", {"after": 0}, format="json")
    expected = 401 if role in UNAUTHENTICATED else (202 if role == "rep" else 404)
    assert response.status_code == expected, response.content


# --- Metrics, forecast and quotas ---------------------------------------------------------------------------------
# Snapshot rows follow the group they describe (forecasting.selectors): a row about the rep is seen by whoever sees
# the rep's records; a row about their team by its managers (and its members when REP_VISIBILITY is "team"); a
# company-, pipeline- or source-wide row, which adds up everyone's deals, by admins only. Quotas likewise.


def sees_team(role: str, visibility: str) -> bool:
    return role in {"manager", "admin"} or (visibility == "team" and role in {"rep", "teammate"})


def admin_only(role: str, visibility: str) -> bool:
    return role == "admin"


# (endpoint, path, the row key and subject that must be listed exactly when `who` says so, who)
METRIC_ROWS = [
    ("win rates per owner", "/api/v1/metrics/win-rates/?group=owner", "owner_id", "rep", sees),
    ("win rates of the owner", "/api/v1/metrics/win-rates/?group=owner&owner={rep}", "owner_id", "rep", sees),
    ("win rates of the team", "/api/v1/metrics/win-rates/?group=team&team={team}", "team_id", "team", sees_team),
    ("win rates of the company", "/api/v1/metrics/win-rates/?period=2026-10", "group_kind", "company", admin_only),
    ("win rates per pipeline", "/api/v1/metrics/win-rates/?group=pipeline", "pipeline_id", "pipeline", admin_only),
    ("win rates per source", "/api/v1/metrics/win-rates/?group=source", "source", "source", admin_only),
    ("sales cycle per owner", "/api/v1/metrics/sales-cycle/?group=owner&period=2026-Q4", "owner_id", "rep", sees),
    ("funnel per owner", "/api/v1/metrics/funnel/?group=owner&pipeline={pipeline}", "owner_id", "rep", sees),
    ("funnel of the company", "/api/v1/metrics/funnel/", "group_kind", "company", admin_only),
    ("stage times per team", "/api/v1/metrics/stage-times/?group=team", "team_id", "team", sees_team),
    ("stage times per source", "/api/v1/metrics/stage-times/?group=source", "source", "source", admin_only),
    ("leads per owner", "/api/v1/metrics/leads/?group=owner", "owner_id", "rep", sees),
    ("stale deals", "/api/v1/metrics/stale-deals/", "deal_id", "stale_deal", sees),
    ("stale deals of the team", "/api/v1/metrics/stale-deals/?team={team}", "deal_id", "stale_deal", sees),
    ("forecast per owner", "/api/v1/forecast/?group=owner&period=2026-10", "owner_id", "rep", sees),
    ("forecast of the company", "/api/v1/forecast/?period=2026-10", "group_kind", "company", admin_only),
    ("forecast accuracy per owner", "/api/v1/forecast/accuracy/?group=owner", "owner_id", "rep", sees),
    ("backtest per owner", "/api/v1/forecast/backtest/?group=owner", "owner_id", "rep", sees),
    ("backtest of the team", "/api/v1/forecast/backtest/?group=team&team={team}", "team_id", "team", sees_team),
    ("backtest of the company", "/api/v1/forecast/backtest/?period=2026-10", "group_kind", "company", admin_only),
    ("calibration per owner", "/api/v1/metrics/calibration/?group=owner", "owner_id", "rep", sees),
    ("calibration of the company", "/api/v1/metrics/calibration/", "group_kind", "company", admin_only),
    ("quotas", "/api/v1/quotas/", "id", "rep_quota", sees),
    ("quotas of the rep", "/api/v1/quotas/?user={rep}", "id", "rep_quota", sees),
    ("team quotas", "/api/v1/quotas/?team={team}", "id", "team_quota", sees_team),
]


@pytest.fixture
def quota_ids(org, ids):
    """Quotas of the rep, of their team and of another team's rep, for this quarter."""
    import datetime as dt

    from forecasting.models import Quota

    quarter = {"period_start": dt.date(2026, 10, 1), "period_end": dt.date(2027, 1, 1)}
    return ids | {
        "rep_quota": Quota.objects.create(user=org.rep, amount=5000, **quarter).pk,
        "team_quota": Quota.objects.create(team=org.team, amount=20000, **quarter).pk,
        "other_quota": Quota.objects.create(user=org.other_rep, amount=7000, **quarter).pk,
        "other_rep": org.other_rep.pk,
        "other_team": org.other_team.pk,
    }


@pytest.fixture
def metric_ids(org, pipeline, quota_ids):
    """The rep's history as metrics see it (a deal won in October 2026, a stale deal since September) and
    recomputes that snapshot it: one at the start of October (which keeps October's forecast), one now."""
    from decimal import Decimal

    from forecasting.services import recompute_history_metrics, recompute_metrics
    from tests.forecasting.helpers import at, deal_with_history

    won = [("Prospecting", "2026-10-01"), ("Won", "2026-10-11")]
    deal_with_history(owner=org.rep, pipeline=pipeline, amount=Decimal(1000), source="Web", path=won)
    stale = deal_with_history(owner=org.rep, pipeline=pipeline, source="Web", path=[("Prospecting", "2026-09-01")])
    recompute_metrics(as_of=at("2026-10-01 00:30"))
    recompute_metrics(as_of=at("2026-11-25 12:00"))
    recompute_history_metrics(as_of=at("2026-11-25 12:00"))
    return quota_ids | {"stale_deal": stale.pk, "source": "Web", "company": "company"}


# One test per role and visibility, each endpoint checked in turn: the snapshots are built once per test.
@pytest.mark.parametrize("visibility", ["own", "team"])
@pytest.mark.parametrize("role", ROLES)
def test_metric_rows_are_listed_exactly_to_those_who_see_their_group(settings, api, metric_ids, visibility, role):
    settings.REP_VISIBILITY = visibility
    client = api(role)
    for endpoint, path, key, subject, who in METRIC_ROWS:
        response = client.get(fill(path, metric_ids))
        if role in UNAUTHENTICATED:
            assert response.status_code == 401, endpoint
            continue
        assert response.status_code == 200, (endpoint, response.content)
        rows = response.json()["results"]
        listed = {row[key] for row in rows}
        assert (metric_ids[subject] in listed) == who(role, visibility), (endpoint, listed)
        if role != "admin" and key != "id":
            # Nothing else leaks either: no company-wide row, nothing about the other team or its rep (whose own
            # groups answer to them and their manager, empty: a read of one period has a row for every visible group).
            assert all(row.get("group_kind", "owner") in {"owner", "team"} for row in rows), endpoint
            others = [row for row in rows if metric_ids["other_rep"] == row.get("owner_id")]
            others += [row for row in rows if metric_ids["other_team"] == row.get("team_id")]
            if role in {"other_rep", "other_manager"}:
                assert not any(row.get("won") or row.get("reached") or row.get("open_count") for row in others), others
            else:
                assert others == [], endpoint
    if role not in UNAUTHENTICATED:
        # The forecast's past due and learned probabilities, beside its page, follow the same rule.
        body = client.get("/api/v1/forecast/?group=owner").json()
        for rows in (body["past_due"], body["learned_probabilities"]):
            owners = {row["owner_id"] for row in rows}
            assert (metric_ids["rep"] in owners) == sees(role, visibility)
            assert role == "admin" or metric_ids["other_rep"] not in owners


def quota_write_status(role: str, visibility: str, success: int, holder: str) -> int:
    """Admins change any quota, managers those of their team and its members; others get 403 for a quota they
    see, else 404. `holder`: "rep" (the rep's quota) or "team" (their team's)."""
    if role in UNAUTHENTICATED:
        return 401
    if role in {"manager", "admin"}:
        return success
    seen = sees(role, visibility) if holder == "rep" else sees_team(role, visibility)
    return 403 if seen else 404


QUOTA_WRITES = [
    ("quota detail", "get", "/api/v1/quotas/{rep_quota}/", None, 200, "rep", "read"),
    ("team quota detail", "get", "/api/v1/quotas/{team_quota}/", None, 200, "team", "read"),
    ("quota update", "put", "/api/v1/quotas/{rep_quota}/", {"user": "{rep}", **{"amount": "6000.00"}}, 200, "rep", ""),
    ("quota partial update", "patch", "/api/v1/quotas/{rep_quota}/", {"amount": "1.00"}, 200, "rep", ""),
    ("team quota partial update", "patch", "/api/v1/quotas/{team_quota}/", {"amount": "1.00"}, 200, "team", ""),
    ("quota delete", "delete", "/api/v1/quotas/{rep_quota}/", None, 204, "rep", ""),
    ("team quota delete", "delete", "/api/v1/quotas/{team_quota}/", None, 204, "team", ""),
]
PERIOD = {"period_start": "2027-01-01", "period_end": "2027-04-01"}


@pytest.mark.parametrize("visibility", ["own", "team"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("endpoint", "method", "path", "body", "success", "holder", "kind"), QUOTA_WRITES, ids=[e[0] for e in QUOTA_WRITES]
)
def test_quota_answers_by_role(
    settings, api, quota_ids, visibility, role, endpoint, method, path, body, success, holder, kind
):
    settings.REP_VISIBILITY = visibility
    if body is not None and method == "put":
        body = body | PERIOD
    response = getattr(api(role), method)(fill(path, quota_ids), fill(body, quota_ids), format="json")
    if kind == "read":
        seen = sees(role, visibility) if holder == "rep" else sees_team(role, visibility)
        expected = 401 if role in UNAUTHENTICATED else 200 if seen else 404
    else:
        expected = quota_write_status(role, visibility, success, holder)
    assert response.status_code == expected, response.content


# Creating a quota: admins for anyone, managers for their team and its members; reps never (403); a holder the
# writer may not set a quota for is an id that "does not exist" (400), as for any write naming a record.
QUOTA_CREATES = [
    ("for the rep", {"user": "{rep}"}, {"manager", "admin"}),
    ("for the rep's team", {"team": "{team}"}, {"manager", "admin"}),
    ("for the other team's rep", {"user": "{other_rep}"}, {"other_manager", "admin"}),
    ("for the other team", {"team": "{other_team}"}, {"other_manager", "admin"}),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("endpoint", "holder", "allowed"), QUOTA_CREATES, ids=[e[0] for e in QUOTA_CREATES])
def test_quota_creation_answers_by_role(api, quota_ids, role, endpoint, holder, allowed):
    body = fill(holder, quota_ids) | PERIOD | {"amount": "100.00"}
    response = api(role).post("/api/v1/quotas/", body, format="json")
    if role in UNAUTHENTICATED:
        expected = 401
    elif role in allowed:
        expected = 201
    elif role in {"rep", "teammate", "other_rep"}:
        expected = 403
    else:
        expected = 400
    assert response.status_code == expected, response.content
    if expected == 400:
        assert "does not exist" in response.json()[next(iter(holder))][0]


@pytest.mark.parametrize("role", ROLES)
def test_only_managers_and_admins_start_and_follow_a_recompute(api, role, monkeypatch):
    from unittest import mock

    task_id = "6f1c1a52-3b0e-4c8e-9d2f-0a7c5e1b2d34"
    monkeypatch.setattr(
        "forecasting.tasks.recompute_metrics_task.apply_async", mock.Mock(return_value=mock.Mock(id=task_id))
    )
    started = api(role).post("/api/v1/metrics/recompute/")
    followed = api(role).get(f"/api/v1/metrics/recompute/{task_id}/")
    expected = 401 if role in UNAUTHENTICATED else 403 if role in {"rep", "teammate", "other_rep"} else None
    assert started.status_code == (expected or 202), started.content
    assert followed.status_code == (expected or 200), followed.content


# --- Reads computed when asked: the waterfall, slippage and pacing follow the metric rows' rule -----------------


@pytest.fixture
def history_reads(org, pipeline):
    """A deal of the rep's, in this month's pipeline since 40 days ago, pushed to next month between `from` and
    `to`: it is pushed out of this month's waterfall and has slipped out of this month. Returns the read paths."""
    from datetime import timedelta
    from decimal import Decimal

    from forecasting.periods import Period
    from pipeline import services
    from tests.pipeline.test_field_history import clock

    month = Period.current("month")
    deal = services.create_deal(
        actor=org.rep,
        title="Slips",
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("500.00"),
        expected_close_date=month.start,
        created_at=timezone.now() - timedelta(days=40),
    )
    at_from = clock()
    services.update_deal(deal=deal, actor=org.rep, expected_close_date=month.end)
    at_to = clock()
    when = f"period={month.key}&from={quote(at_from.isoformat())}&to={quote(at_to.isoformat())}"
    return {
        "deal": deal.pk,
        "waterfall per owner": (f"/api/v1/forecast/waterfall/?{when}&group=owner", org.rep.pk, sees),
        "waterfall per team": (f"/api/v1/forecast/waterfall/?{when}&group=team", org.team.pk, sees_team),
        "waterfall of the company": (f"/api/v1/forecast/waterfall/?{when}", None, admin_only),
        "slippage per owner": (f"/api/v1/metrics/slippage/?period={month.key}&group=owner", org.rep.pk, sees),
        "slippage of the company": (f"/api/v1/metrics/slippage/?period={month.key}", None, admin_only),
        "pacing per owner": (f"/api/v1/forecast/pacing/?period={month.key}&group=owner", org.rep.pk, sees),
        "pacing per team": (f"/api/v1/forecast/pacing/?period={month.key}&group=team", org.team.pk, sees_team),
        "pacing of the company": (f"/api/v1/forecast/pacing/?period={month.key}", None, admin_only),
        "pushed out of the rep's row": (
            f"/api/v1/forecast/waterfall/deals/?{when}&group=owner&key={org.rep.pk}&bucket=pushed_out",
            deal.pk,
            sees,
        ),
        "pushed out of the company's": (
            f"/api/v1/forecast/waterfall/deals/?{when}&bucket=pushed_out",
            deal.pk,
            admin_only,
        ),
    }


@pytest.mark.parametrize("visibility", ["own", "team"])
@pytest.mark.parametrize("role", ROLES)
def test_history_reads_list_a_group_exactly_to_those_who_see_it(settings, api, history_reads, visibility, role):
    settings.REP_VISIBILITY = visibility
    client = api(role)
    for endpoint, read in history_reads.items():
        if endpoint == "deal":
            continue
        path, subject, who = read
        response = client.get(path)
        if role in UNAUTHENTICATED:
            assert response.status_code == 401, endpoint
            continue
        assert response.status_code == 200, (endpoint, response.content)
        rows = response.json()["results"]
        listed = {row["deal"] if "deals/" in path else row["key"] for row in rows}
        assert (subject in listed) == who(role, visibility), (endpoint, rows)
        if role != "admin" and "deals/" not in path:
            assert None not in listed, endpoint  # no company-wide row


# --- The forecast call: submissions and adjustments follow the records' rule, team numbers the team rows' --------


@pytest.fixture
def call_ids(org, ids):
    """The rep's commit for this quarter, their manager's adjustment of it, and the manager's number for the team."""
    from forecasting import services
    from forecasting.periods import Period

    quarter = Period.current("quarter")
    call = {"period": quarter, "category": "commit", "amount": "5000"}
    return ids | {
        "quarter": quarter.key,
        "submission": services.submit_forecast(user=org.rep, **call).pk,
        "adjustment": services.adjust_forecast(user=org.manager, member=org.rep, note="Too rosy", **call).pk,
        "team_submission": services.submit_forecast(user=org.manager, team=org.team, **call).pk,
    }


# (endpoint, path, the subject listed or answered exactly when `who` says so, who)
CALL_READS = [
    ("submission detail", "/api/v1/forecast/submissions/{submission}/", None, sees),
    ("adjustment detail", "/api/v1/forecast/adjustments/{adjustment}/", None, sees),
    ("team submission detail", "/api/v1/forecast/submissions/{team_submission}/", None, sees_team),
    ("submissions", "/api/v1/forecast/submissions/?page_size=200", "submission", sees),
    ("submissions of the rep", "/api/v1/forecast/submissions/?user={rep}", "submission", sees),
    ("team submissions", "/api/v1/forecast/submissions/?team={team}", "team_submission", sees_team),
    ("adjustments", "/api/v1/forecast/adjustments/?period={quarter}", "adjustment", sees),
]


@pytest.mark.parametrize("visibility", ["own", "team"])
@pytest.mark.parametrize("role", ROLES)
def test_forecast_calls_are_seen_exactly_by_those_who_see_their_member_or_team(
    settings, api, call_ids, visibility, role
):
    settings.REP_VISIBILITY = visibility
    client = api(role)
    for endpoint, path, subject, who in CALL_READS:
        response = client.get(fill(path, call_ids))
        if role in UNAUTHENTICATED:
            assert response.status_code == 401, endpoint
        elif subject is None:
            assert response.status_code == (200 if who(role, visibility) else 404), endpoint
        else:
            assert response.status_code == 200, (endpoint, response.content)
            listed = {row["id"] for row in response.json()["results"]}
            assert (call_ids[subject] in listed) == who(role, visibility), endpoint
    for path in ("/api/v1/forecast/rollup/?period={quarter}", "/api/v1/forecast/trend/?period={quarter}"):
        response = client.get(fill(path, call_ids))
        assert response.status_code == (401 if role in UNAUTHENTICATED else 200), path
    if role not in UNAUTHENTICATED:
        rollup = client.get(fill("/api/v1/forecast/rollup/?period={quarter}", call_ids)).json()
        members = {row["user"] for team in rollup["teams"] for row in team["members"]}
        assert (call_ids["rep"] in members) == sees(role, visibility)
        assert role == "admin" or org_other_rep_absent(rollup, role)
        assert client.get("/api/v1/forecast/commit-reliability/").status_code == 200


def org_other_rep_absent(rollup: dict, role: str) -> bool:
    """No member of the other team shows to anyone outside it (its rep and manager see the rep's own row)."""
    teams = {team["name"] for team in rollup["teams"]}
    return role in {"other_rep", "other_manager"} or "West" not in teams


@pytest.mark.parametrize("visibility", ["own", "team"])
@pytest.mark.parametrize("role", ROLES)
def test_forecast_call_writes_answer_by_role(settings, api, call_ids, visibility, role):
    settings.REP_VISIBILITY = visibility
    client = api(role)
    call = {"period": call_ids["quarter"], "category": "best_case", "amount": "100.00"}
    own = client.post("/api/v1/forecast/submissions/", call, format="json")
    team = client.post("/api/v1/forecast/submissions/", call | {"team": call_ids["team"]}, format="json")
    adjustment = client.post(
        "/api/v1/forecast/adjustments/", call | {"user": call_ids["rep"], "note": "Moved"}, format="json"
    )
    changes = [
        getattr(client, method)(fill(path, call_ids), {"amount": "1.00"}, format="json")
        for method in ("put", "patch", "delete")
        for path in ("/api/v1/forecast/submissions/{submission}/", "/api/v1/forecast/adjustments/{adjustment}/")
    ]
    if role in UNAUTHENTICATED:
        assert {own.status_code, team.status_code, adjustment.status_code} == {401}
        assert {response.status_code for response in changes} == {401}
        return
    assert own.status_code == 201, own.content
    assert team.status_code == (201 if role == "manager" else 403), team.content
    expected = 201 if role in {"manager", "admin"} else 403 if sees(role, visibility) else 404
    assert adjustment.status_code == expected, adjustment.content
    assert {response.status_code for response in changes} == {405}
