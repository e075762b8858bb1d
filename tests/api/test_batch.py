"""Batch upserts (SPEC §4, issue 18 item 3): `POST /api/v1/{deals,leads,organizations,contacts}/batch/`, up to 200
items keyed by `external_id`, each through the service of a single write, one metrics refresh for the whole batch."""

import time
from decimal import Decimal

import pytest

from accounts.models import AuditEntry
from config.api import BATCH_MAX_ITEMS, BATCH_NOT_APPLIED
from pipeline import services
from pipeline.api.serializers import DealSerializer
from pipeline.models import Contact, Deal, DealState, Lead, Organization, StageChange
from pipeline.services import EXTERNAL_ID_TAKEN
from pipeline.webhooks.models import WebhookEvent, WebhookSubscription
from tests.api.conftest import client_for
from tests.factories import make_deal, stage
from tests.queries import capture_queries

pytestmark = pytest.mark.django_db


def batch(client, kind: str, items, *, all_or_none: bool | None = None, **headers):
    body = {"items": items} if all_or_none is None else {"items": items, "all_or_none": all_or_none}
    return client.post(f"/api/v1/{kind}/batch/", body, format="json", **headers)


def statuses(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [item["status"] for item in response.json()["items"]]


@pytest.fixture
def refreshes(settings, monkeypatch) -> list:
    """The refresh requests made after commit (each would be a round trip to Redis, and maybe a task): counted."""
    settings.METRICS_RECOMPUTE_ON_CHANGE = True
    asked: list = []
    monkeypatch.setattr("forecasting.services.request_refresh", lambda: asked.append("refresh"))
    monkeypatch.setattr("forecasting.services.request_recompute", lambda: asked.append("recompute"))
    return asked


# --- Creates, updates, errors -------------------------------------------------------------------------------------


def test_items_create_and_update_by_external_id_with_a_status_and_errors_each(org, pipeline):
    existing = make_deal(owner=org.rep, pipeline=pipeline, title="Old title", external_id="crm-1")
    response = batch(
        client_for(org.rep),
        "deals",
        [
            {"external_id": "crm-1", "title": "New title", "amount": "1500.00"},
            {"external_id": "crm-2", "title": "Brand new"},
            {"title": "No external id"},
            {"external_id": "crm-3", "amount": "-5"},
            {"external_id": "crm-4"},
        ],
    )
    assert statuses(response) == [200, 201, 201, 400, 400]
    body = response.json()
    assert body["all_or_none"] is False and body["rolled_back"] is False
    results = body["items"]
    assert [item["index"] for item in results] == [0, 1, 2, 3, 4]
    assert results[0] == {"index": 0, "status": 200, "id": existing.pk, "errors": {}}
    existing.refresh_from_db()
    assert (existing.title, existing.amount, existing.version) == ("New title", Decimal("1500.00"), 2)
    created = Deal.objects.get(external_id="crm-2")
    assert results[1]["id"] == created.pk and created.owner == org.rep and created.stage.name == "Prospecting"
    assert Deal.objects.get(pk=results[2]["id"]).title == "No external id"
    assert set(results[3]["errors"]) == {"title", "amount"} and results[3]["id"] is None
    assert results[4]["errors"] == {"title": ["This field is required."]}
    # Each item in its own savepoint: the failed ones left nothing, the others are all there.
    assert not Deal.objects.filter(external_id__in=["crm-3", "crm-4"]).exists()
    assert Deal.objects.filter(owner=org.rep).count() == 3


def test_an_update_changes_only_the_fields_sent_and_keeps_the_rules_of_a_patch(org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, title="Keep", amount=Decimal("10.00"), external_id="x-1")
    deal = services.move_deal(deal=deal, stage=stage(pipeline, "Discovery"), actor=org.rep)  # requires an amount
    client = client_for(org.rep)
    response = batch(client, "deals", [{"external_id": "x-1", "amount": None}, {"external_id": "x-1"}])
    assert statuses(response) == [400, 400]
    assert "amount" in response.json()["items"][0]["errors"]
    assert response.json()["items"][1]["errors"] == {"external_id": ["Item 0 has the same external id."]}
    assert response.json()["items"][0]["id"] == deal.pk

    stale = batch(client, "deals", [{"external_id": "x-1", "source": "web", "version": deal.version - 1}])
    assert statuses(stale) == [409] and "version" in stale.json()["items"][0]["errors"]
    fresh = batch(client, "deals", [{"external_id": "x-1", "source": "web", "version": deal.version}])
    assert statuses(fresh) == [200]
    deal.refresh_from_db()
    assert (deal.title, deal.source, deal.amount) == ("Keep", "web", Decimal("10.00"))


def test_all_or_none_writes_nothing_when_an_item_fails_and_says_which(org, pipeline):
    existing = make_deal(owner=org.rep, pipeline=pipeline, title="Untouched", external_id="a-1")
    before = (Deal.objects.count(), AuditEntry.objects.count(), StageChange.objects.count(), DealState.objects.count())
    response = batch(
        client_for(org.rep),
        "deals",
        [
            {"external_id": "a-1", "title": "Changed"},
            {"external_id": "a-2", "title": "Created"},
            {"external_id": "a-3", "title": ""},
        ],
        all_or_none=True,
    )
    assert statuses(response) == [424, 424, 400]
    body = response.json()
    assert body["rolled_back"] is True and body["all_or_none"] is True
    assert body["items"][0] == {"index": 0, "status": 424, "id": existing.pk, "errors": {"detail": [BATCH_NOT_APPLIED]}}
    assert body["items"][1]["id"] is None
    assert "title" in body["items"][2]["errors"]
    existing.refresh_from_db()
    assert existing.title == "Untouched" and existing.version == 1
    after = (Deal.objects.count(), AuditEntry.objects.count(), StageChange.objects.count(), DealState.objects.count())
    assert after == before


def test_all_or_none_writes_everything_when_every_item_passes(org, pipeline):
    response = batch(
        client_for(org.rep),
        "deals",
        [{"external_id": f"ok-{i}", "title": f"Deal {i}"} for i in range(3)],
        all_or_none=True,
    )
    assert statuses(response) == [201, 201, 201] and response.json()["rolled_back"] is False
    assert Deal.objects.filter(external_id__startswith="ok-").count() == 3


def test_leads_organizations_and_contacts_have_the_same_batch(org, pipeline):
    client = client_for(org.rep)
    organization = services.create_organization(actor=org.rep, name="Acme", external_id="org-1")
    orgs = batch(client, "organizations", [{"external_id": "org-1", "industry": "Steel"}, {"name": "Globex"}])
    assert statuses(orgs) == [200, 201]
    organization.refresh_from_db()
    assert organization.industry == "Steel" and Organization.objects.filter(name="Globex", owner=org.rep).exists()

    contacts = batch(
        client, "contacts", [{"external_id": "c-1", "last_name": "Buyer", "organization": organization.pk}, {}]
    )
    assert statuses(contacts) == [201, 400]
    assert Contact.objects.get(external_id="c-1").organization == organization
    assert contacts.json()["items"][1]["errors"] == {"last_name": ["This field is required."]}

    lead = services.create_lead(actor=org.rep, last_name="Lead", external_id="l-1")
    leads = batch(client, "leads", [{"external_id": "l-1", "score": 70}, {"last_name": "New", "status": "mql"}])
    assert statuses(leads) == [200, 201]
    lead.refresh_from_db()
    assert lead.score == 70
    assert Lead.objects.get(pk=leads.json()["items"][1]["id"]).status == "mql"


# --- Visibility ---------------------------------------------------------------------------------------------------


def test_a_rep_cannot_update_another_reps_deal_through_the_batch(org, pipeline, settings):
    settings.REP_VISIBILITY = "team"  # the teammate's deal is visible to the rep, not editable
    teammates = make_deal(owner=org.teammate, pipeline=pipeline, title="Teammate's", external_id="t-1")
    others = make_deal(owner=org.other_rep, pipeline=pipeline, title="Other team's", external_id="o-1")
    response = batch(
        client_for(org.rep),
        "deals",
        [{"external_id": "t-1", "title": "Mine now"}, {"external_id": "o-1", "title": "Mine now"}],
    )
    # The same answer as a single create with that id, visible holder or not: it discloses nothing (README).
    assert statuses(response) == [400, 400]
    for item in response.json()["items"]:
        assert item["errors"] == {"external_id": [EXTERNAL_ID_TAKEN]} and item["id"] is None
    single = client_for(org.rep).post("/api/v1/deals/", {"title": "Mine now", "external_id": "o-1"}, format="json")
    assert single.status_code == 400 and single.json() == {"external_id": [EXTERNAL_ID_TAKEN]}
    for deal in (teammates, others):
        deal.refresh_from_db()
        assert deal.title != "Mine now" and deal.version == 1


def test_a_manager_updates_a_members_deal_and_a_related_id_outside_visibility_is_404(org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, title="Member's", external_id="m-1")
    hidden = services.create_organization(actor=org.other_rep, name="Hidden")
    response = batch(
        client_for(org.manager),
        "deals",
        [{"external_id": "m-1", "title": "Edited by manager"}, {"title": "With hidden org", "organization": hidden.pk}],
    )
    assert statuses(response) == [200, 404]
    assert response.json()["items"][1]["errors"] == {
        "detail": [f"No organization with id {hidden.pk} that you can use."]
    }
    deal.refresh_from_db()
    assert deal.title == "Edited by manager"
    assert AuditEntry.objects.filter(object_id=deal.pk, action="updated").get().actor == org.manager


def test_a_rep_cannot_give_a_batch_deal_to_someone_else(org, pipeline):
    response = batch(client_for(org.rep), "deals", [{"title": "Gift", "owner": org.other_rep.pk}])
    assert statuses(response) == [404]
    assert not Deal.objects.filter(title="Gift").exists()


# --- The same effects as single writes ----------------------------------------------------------------------------


@pytest.fixture
def subscribed(org, monkeypatch):
    """A subscription of the admin to deal events; deliveries are written but not sent (no receiver here)."""
    monkeypatch.setattr("pipeline.webhooks.services._queue_deliveries", lambda ids: None)
    return WebhookSubscription.objects.create(
        owner=org.admin, url="https://hooks.example.com/crm", events=["deal.created", "deal.updated"], secret="s"
    )


def _effects(since: int) -> tuple[list, list]:
    audit = [(e.action, sorted(e.changes)) for e in AuditEntry.objects.filter(pk__gt=since).order_by("pk")]
    events = sorted(WebhookEvent.objects.values_list("type", flat=True))
    return audit, events


def test_audit_entries_history_and_webhook_events_equal_those_of_single_writes(
    org, pipeline, subscribed, django_capture_on_commit_callbacks
):
    client = client_for(org.rep)
    body = {"title": "Twin", "amount": "100.00", "expected_close_date": "2026-12-31"}
    start = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    with django_capture_on_commit_callbacks(execute=True):
        single = client.post("/api/v1/deals/", {**body, "external_id": "single"}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        client.patch(f"/api/v1/deals/{single.json()['id']}/", {"amount": "200.00"}, format="json")
    single_effects = _effects(start)
    WebhookEvent.objects.all().delete()

    start = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first()
    with django_capture_on_commit_callbacks(execute=True):
        assert statuses(batch(client, "deals", [{**body, "external_id": "batched"}])) == [201]
    with django_capture_on_commit_callbacks(execute=True):
        assert statuses(batch(client, "deals", [{"external_id": "batched", "amount": "200.00"}])) == [200]
    assert _effects(start) == single_effects
    audit, events = single_effects
    assert [action for action, _ in audit] == ["created", "updated"] and audit[1][1] == ["amount"]
    assert events == ["deal.created", "deal.updated"]
    twin, batched = Deal.objects.get(external_id="single"), Deal.objects.get(external_id="batched")
    history = [
        list(DealState.objects.filter(deal=d).order_by("valid_from").values_list("amount", "changed_by"))
        for d in (twin, batched)
    ]
    assert history[0] == history[1] == [(Decimal("100.00"), org.rep.pk), (Decimal("200.00"), org.rep.pk)]


def test_a_batch_asks_for_one_metrics_refresh_where_single_writes_ask_once_each(
    org, pipeline, refreshes, django_capture_on_commit_callbacks
):
    client = client_for(org.rep)
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(3):
            assert client.post("/api/v1/deals/", {"title": f"Single {i}"}, format="json").status_code == 201
    assert refreshes == ["refresh"] * 3

    refreshes.clear()
    items = [{"external_id": f"b-{i}", "title": f"Batch {i}"} for i in range(BATCH_MAX_ITEMS)]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert statuses(batch(client, "deals", items)) == [201] * BATCH_MAX_ITEMS
    assert refreshes == ["refresh"]
    assert len(callbacks) >= BATCH_MAX_ITEMS  # one signal per deal was sent: the asks were gathered, not lost

    refreshes.clear()
    with django_capture_on_commit_callbacks(execute=True):
        statuses(batch(client, "leads", [{"last_name": f"Lead {i}"} for i in range(5)]))
    assert refreshes == ["recompute"]
    refreshes.clear()
    with django_capture_on_commit_callbacks(execute=True):
        statuses(batch(client, "deals", [{"title": ""}, {"title": "After a failure"}], all_or_none=True))
    assert refreshes == []  # rolled back: nothing changed, nothing to refresh


def test_a_batch_costs_the_same_statements_whatever_its_size(org, pipeline):
    client = client_for(org.rep)
    # Warm: the token's first use is stamped, and the audit trail's content type cached, once per process.
    assert client.post("/api/v1/deals/", {"title": "Warm"}, format="json").status_code == 201
    counts, listings = {}, {}
    for size in (5, 10):
        for step, expected in (("create", 201), ("update", 200)):
            items = [
                {"external_id": f"q{size}-{i}", "title": f"Q {i}", "amount": "10.00"}
                if step == "create"
                else {"external_id": f"q{size}-{i}", "amount": "20.00", "expected_close_date": "2027-01-31"}
                for i in range(size)
            ]
            with capture_queries() as captured:
                assert statuses(batch(client, "deals", items)) == [expected] * size
            counts[step, size] = len(captured)
            listings[step, size] = captured.listing()
    # What the items share is read and written once (`services.deal_batch`): the token, the batch's savepoint
    # (2), the locking read of the records it updates, the stages, the external ids named, the field history's
    # author (set, restored), then the deals in one statement in a savepoint (3), the first stage changes with the
    # stage history's per-row stamping off (3) and the audit entries. An update batch writes no stage change, and
    # one UPDATE per set of changed columns.
    assert counts == {("create", 5): 15, ("create", 10): 15, ("update", 5): 12, ("update", 10): 12}, listings
    assert Deal.objects.filter(external_id__startswith="q10-", amount=Decimal("20.00")).count() == 10


def test_200_deals_take_well_under_a_second(org, pipeline):
    client = client_for(org.rep)
    assert client.post("/api/v1/deals/", {"title": "Warm"}, format="json").status_code == 201
    items = [{"external_id": f"t-{i}", "title": f"Timed {i}", "amount": "10.00"} for i in range(BATCH_MAX_ITEMS)]
    started = time.perf_counter()
    assert statuses(batch(client, "deals", items)) == [201] * BATCH_MAX_ITEMS
    created_ms = (time.perf_counter() - started) * 1000
    updates = [{"external_id": f"t-{i}", "amount": "20.00"} for i in range(BATCH_MAX_ITEMS)]
    started = time.perf_counter()
    assert statuses(batch(client, "deals", updates)) == [200] * BATCH_MAX_ITEMS
    updated_ms = (time.perf_counter() - started) * 1000
    print(f"\n200 deals in one batch: create {created_ms:.0f} ms, update {updated_ms:.0f} ms")
    assert Deal.objects.filter(external_id__startswith="t-", amount=Decimal("20.00")).count() == BATCH_MAX_ITEMS


# --- The envelope -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"items": [{"title": "x"}] * (BATCH_MAX_ITEMS + 1)}, "items", "At most 200 items per batch."),
        ({"items": {"title": "x"}}, "items", 'Send a list of 1 to 200 objects, not a "dict".'),
        ({"items": []}, "items", "Send at least one item."),
        ({}, "items", "This field is required."),
        ({"items": [{"title": "x"}], "all_or_none": "maybe"}, "all_or_none", "Must be a valid boolean."),
    ],
)
def test_a_malformed_envelope_is_a_400_naming_the_parameter(org, pipeline, body, field, message):
    response = client_for(org.rep).post("/api/v1/deals/batch/", body, format="json")
    assert response.status_code == 400 and response.json() == {field: [message]}
    assert not Deal.objects.exists()


def test_an_item_that_is_not_an_object_is_a_400_naming_it(org, pipeline):
    response = client_for(org.rep).post("/api/v1/deals/batch/", {"items": [{"title": "ok"}, ["no"]]}, format="json")
    assert response.status_code == 400
    assert response.json() == {"items": {"1": ['Each item is an object of the record\'s fields, not a "list".']}}
    body_not_object = client_for(org.rep).post("/api/v1/deals/batch/", [{"title": "ok"}], format="json")
    assert body_not_object.status_code == 400 and "non_field_errors" in body_not_object.json()
    assert not Deal.objects.exists()


def test_a_retried_batch_with_its_idempotency_key_is_replayed_and_writes_nothing_more(org, pipeline):
    client = client_for(org.rep)
    items = [{"external_id": "i-1", "title": "Once"}, {"title": "Also once"}]
    first = batch(client, "deals", items, HTTP_IDEMPOTENCY_KEY="batch-1")
    retried = batch(client, "deals", items, HTTP_IDEMPOTENCY_KEY="batch-1")
    assert statuses(first) == [201, 201]
    assert retried.json() == first.json() and retried["Idempotent-Replayed"] == "true"
    assert Deal.objects.filter(title__in=["Once", "Also once"]).count() == 2
    # Without the key the same body is a new request: the external id now updates, the other item creates again.
    assert statuses(batch(client, "deals", items)) == [200, 201]


def test_the_schema_documents_the_batch_bodies_and_per_item_answers(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]
    for kind, item in [
        ("deals", "DealCreateRequest"),
        ("leads", "LeadCreateRequest"),
        ("organizations", "OrganizationRequest"),
        ("contacts", "ContactRequest"),
    ]:
        operation = schema["paths"][f"/api/v1/{kind}/batch/"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        items = components[body]["properties"]["items"]
        assert items["maxItems"] == BATCH_MAX_ITEMS and items["items"] == {"$ref": f"#/components/schemas/{item}"}
        assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/BatchResult"
        }
        assert any(p["name"] == "Idempotency-Key" for p in operation["parameters"])
    result = components["BatchItemResult"]["properties"]
    assert set(result) == {"index", "status", "id", "errors"}
    assert components["BatchItemStatusEnum"]["enum"] == [201, 200, 400, 403, 404, 409, 424]


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("rep", 200),
        ("manager", 200),
        ("admin", 200),
        ("teammate", 400),
        ("other_rep", 400),
        ("other_manager", 400),
        ("anonymous", 401),
        ("revoked_token", 401),
    ],
)
@pytest.mark.parametrize("visibility", ["own", "team"])
def test_who_may_update_a_reps_deal_through_the_batch(api, org, pipeline, settings, role, expected, visibility):
    settings.REP_VISIBILITY = visibility
    deal = make_deal(owner=org.rep, pipeline=pipeline, title="Rep's", external_id="rep-1")
    response = batch(api(role), "deals", [{"external_id": "rep-1", "title": f"By {role}"}])
    deal.refresh_from_db()
    if expected == 401:
        assert response.status_code == 401 and deal.title == "Rep's"
        return
    [item] = response.json()["items"]
    assert item["status"] == expected
    if expected == 200:
        assert item["id"] == deal.pk and deal.title == f"By {role}"
    else:  # visible to the teammate with "team" or not: the same answer, and the deal as it was
        assert item == {"index": 0, "status": 400, "id": None, "errors": {"external_id": [EXTERNAL_ID_TAKEN]}}
        assert deal.title == "Rep's" and Deal.objects.filter(external_id="rep-1").count() == 1


def test_an_external_id_with_a_nul_character_is_refused_at_its_item(org, pipeline):
    # Found by the schema fuzzer: the lookup of such an id by external_id failed in PostgreSQL (a 500).
    answer = client_for(org.rep).post(
        "/api/v1/deals/batch/", {"items": [{"title": "Nul", "external_id": "R\x00"}]}, format="json"
    )
    assert answer.status_code == 200
    [item] = answer.json()["items"]
    assert item["status"] == 400 and "external_id" in item["errors"]


# --- Writes held to the end of the batch ---------------------------------------------------------------------------


def _events_by_deal() -> dict[int, list[tuple[str, dict]]]:
    events: dict[int, list[tuple[str, dict]]] = {}
    for event in WebhookEvent.objects.order_by("sequence"):
        events.setdefault(event.data["id"], []).append((event.type, event.data))
    return events


def test_an_external_id_taken_meanwhile_refuses_its_item_alone_with_a_409(
    org, pipeline, subscribed, monkeypatch, django_capture_on_commit_callbacks
):
    # A concurrent writer takes "race-2" after the batch looked its external ids up, before it inserts its deals.
    racer: list[Deal] = []
    held_writes = services._in_bulk

    def taken_meanwhile(writes, write_all):
        if not racer:
            racer.append(make_deal(owner=org.other_rep, pipeline=pipeline, title="Racer", external_id="race-2"))
        held_writes(writes, write_all)

    monkeypatch.setattr(services, "_in_bulk", taken_meanwhile)
    items = [{"external_id": "race-1", "title": "A"}, {"external_id": "race-2", "title": "B"}, {"title": "C"}]
    with django_capture_on_commit_callbacks(execute=True):
        response = batch(client_for(org.rep), "deals", items)
    assert statuses(response) == [201, 409, 201]
    results = response.json()["items"]
    assert results[1] == {
        "index": 1,
        "status": 409,
        "id": None,
        "errors": {"detail": ["A concurrent write conflicted with this item: send it again."]},
    }
    written = {deal.title: deal for deal in Deal.objects.filter(owner=org.rep)}
    assert sorted(written) == ["A", "C"] and [results[0]["id"], results[2]["id"]] == [written["A"].pk, written["C"].pk]
    assert Deal.objects.get(external_id="race-2").title == "Racer"
    # Every row of a single create, for the written deals and none for the refused one.
    ids = {written["A"].pk, written["C"].pk}
    created = AuditEntry.objects.filter(action="created", actor=org.rep)
    assert sorted(created.values_list("object_id", flat=True)) == sorted(ids)
    assert sorted(StageChange.objects.filter(changed_by=org.rep).values_list("deal_id", flat=True)) == sorted(ids)
    assert sorted(DealState.objects.filter(changed_by=org.rep).values_list("deal_id", flat=True)) == sorted(ids)
    events = _events_by_deal()
    assert set(events) == ids | {racer[0].pk}
    assert events[written["A"].pk] == [("deal.created", DealSerializer(written["A"]).data)]


def test_mixed_items_answer_each_and_write_what_single_writes_write(
    org, pipeline, subscribed, django_capture_on_commit_callbacks
):
    kept = make_deal(owner=org.rep, pipeline=pipeline, title="Kept", external_id="m-1", amount=Decimal("5.00"))
    moved = make_deal(owner=org.rep, pipeline=pipeline, title="Moved on", external_id="m-2")
    services.update_deal(deal=moved, actor=org.rep, title="Moved on again")  # version 2
    WebhookEvent.objects.all().delete()
    start = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first()
    items = [
        {"external_id": "m-1", "amount": "7.50", "expected_close_date": "2027-03-31"},  # 200
        {"external_id": "m-new", "title": "New", "amount": "3.00"},  # 201
        {"external_id": "m-2", "title": "Stale", "version": 1},  # 409: stale version
        {"external_id": "m-bad", "title": "", "amount": "-1"},  # 400, two fields
        {"title": "Overflowing owner", "owner": 10**30},  # 404, and the batch goes on
        {"external_id": "m-1", "title": "Twice"},  # 400: item 0 has it
        {"title": "Plain"},  # 201
        {"external_id": "m-1"},  # 400 too, nothing else said
    ]
    with django_capture_on_commit_callbacks(execute=True):
        response = batch(client_for(org.rep), "deals", items)
    assert statuses(response) == [200, 201, 409, 400, 404, 400, 201, 400]
    results = response.json()["items"]
    assert set(results[3]["errors"]) == {"title", "amount"}
    assert results[2]["id"] == moved.pk and "version" in results[2]["errors"]
    kept.refresh_from_db()
    moved.refresh_from_db()
    assert (kept.amount, str(kept.expected_close_date), kept.version) == (Decimal("7.50"), "2027-03-31", 2)
    assert (moved.title, moved.version) == ("Moved on again", 2)
    new, plain = Deal.objects.get(external_id="m-new"), Deal.objects.get(title="Plain")
    assert [results[1]["id"], results[6]["id"]] == [new.pk, plain.pk]
    entries = list(AuditEntry.objects.filter(pk__gt=start).order_by("pk"))
    assert [(e.object_id, e.action) for e in entries] == [
        (kept.pk, "updated"),
        (new.pk, "created"),
        (plain.pk, "created"),
    ]
    assert entries[0].changes == {"amount": ["5.00", "7.50"], "expected_close_date": [None, "2027-03-31"]}
    # The stage history's stamps are those of a single create (`kept`): the furthest open stage, no exit yet.
    stamps = {
        deal.pk: (deal.furthest_open_order, *StageChange.objects.filter(deal=deal).values_list("to_stage", "left_at"))
        for deal in Deal.objects.filter(pk__in=[kept.pk, new.pk, plain.pk])
    }
    first = stage(pipeline, "Prospecting")
    assert stamps[new.pk] == stamps[plain.pk] == stamps[kept.pk] == (first.order, (first.pk, None))
    history = list(DealState.objects.filter(deal=kept).order_by("valid_from").values_list("amount", "changed_by"))
    assert history == [(Decimal("5.00"), org.rep.pk), (Decimal("7.50"), org.rep.pk)]
    events = _events_by_deal()
    assert events == {
        kept.pk: [("deal.updated", DealSerializer(kept).data)],
        new.pk: [("deal.created", DealSerializer(new).data)],
        plain.pk: [("deal.created", DealSerializer(plain).data)],
    }
    assert {d.event.data["id"] for d in subscribed.deliveries.select_related("event")} == {kept.pk, new.pk, plain.pk}
