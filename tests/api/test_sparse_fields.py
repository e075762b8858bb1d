"""`?fields=` and `?expand=` on every read (SPEC §4): only the fields asked for, related records nested where a list
has them, nothing more about a related record than its id when the caller may not see it, and 400 on any other
name."""

import pytest

from forecasting.services import recompute_metrics
from pipeline import services
from tests.api.conftest import client_for
from tests.factories import make_qualified_deal

pytestmark = pytest.mark.django_db

# Every list of a resource, with a field that must stay when asked for alongside `id`.
LISTS = {
    "deals": "title",
    "leads": "last_name",
    "activities": "subject",
    "organizations": "name",
    "contacts": "last_name",
    "pipelines": "stages",
    "stages": "name",
    "lost-reasons": "name",
    "users": "username",
    "teams": "members",
    "tokens": "prefix",
    "quotas": "amount",
}


@pytest.fixture
def records(org, pipeline, lost_reason):
    """One of everything, owned by the rep, seen by the admin; the deal with its organization and contact."""
    from forecasting.models import Quota

    organization = services.create_organization(actor=org.rep, name="Acme")
    contact = services.create_contact(actor=org.rep, last_name="Buyer", first_name="Ada", organization=organization)
    deal = make_qualified_deal(
        owner=org.rep, pipeline=pipeline, title="Big one", organization=organization, contact=contact
    )
    lead = services.create_lead(actor=org.rep, last_name="Lead", company="Leadco", organization=organization)
    activity = services.log_activity(actor=org.rep, kind="call", subject="Call", deal=deal)
    quota = Quota.objects.create(user=org.rep, amount=1000, period_start="2026-10-01", period_end="2027-01-01")
    return {
        "deals": deal,
        "leads": lead,
        "activities": activity,
        "organizations": organization,
        "contacts": contact,
        "pipelines": pipeline,
        "stages": deal.stage,
        "lost-reasons": lost_reason,
        "users": org.rep,
        "teams": org.team,
        "quotas": quota,
    }


@pytest.mark.parametrize("resource", LISTS)
def test_every_list_answers_only_the_fields_asked_for(org, records, resource):
    admin = client_for(org.admin)
    field = LISTS[resource]
    response = admin.get(f"/api/v1/{resource}/?fields=id,{field}")
    assert response.status_code == 200, response.content
    rows = response.json()["results"]
    assert rows and all(set(row) == {"id", field} for row in rows)
    full = admin.get(f"/api/v1/{resource}/").json()["results"]
    assert [row[field] for row in rows] == [row[field] for row in full]


@pytest.mark.parametrize("resource", [name for name in LISTS if name != "tokens"])
def test_every_record_read_answers_only_the_fields_asked_for_under_the_full_records_etag(org, records, resource):
    admin = client_for(org.admin)
    url = f"/api/v1/{resource}/{records[resource].pk}/"
    full = admin.get(url)
    sparse = admin.get(f"{url}?fields=id")
    assert sparse.status_code == 200, sparse.content
    assert sparse.json() == {"id": records[resource].pk}
    assert len(full.json()) > 1
    assert sparse["ETag"] == full["ETag"]


@pytest.mark.parametrize("resource", LISTS)
@pytest.mark.parametrize("fields", ["password", "id,password", "", "id,", " "])
def test_an_unknown_or_empty_field_name_answers_400_naming_the_allowed_ones(org, records, resource, fields):
    response = client_for(org.admin).get(f"/api/v1/{resource}/", {"fields": fields})
    assert response.status_code == 400, response.content
    message = response.json()["fields"][0]
    assert f"{LISTS[resource]}," in message or message.endswith(f"{LISTS[resource]} (separated by commas).")
    assert ("Unknown: password." in message) == ("password" in fields)


def test_a_metric_read_answers_only_the_fields_asked_for(org, records):
    recompute_metrics()
    admin = client_for(org.admin)
    response = admin.get("/api/v1/metrics/funnel/?group=owner&fields=owner_id,period_kind")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["results"] and all(set(row) == {"owner_id", "period_kind"} for row in body["results"])
    assert body["metric"] and "computed_at" in body  # the envelope stays whole
    full = admin.get("/api/v1/metrics/funnel/?group=owner").json()["results"]
    assert [row["owner_id"] for row in body["results"]] == [row["owner_id"] for row in full]
    refused = admin.get("/api/v1/metrics/win-rates/?fields=owner_id,nope")
    assert refused.status_code == 400 and "win_rate" in refused.json()["fields"][0]


def test_a_write_answers_the_whole_record_whatever_fields_says(org, records):
    organization = records["organizations"]
    response = client_for(org.rep).patch(
        f"/api/v1/organizations/{organization.pk}/?fields=id", {"industry": "Tools"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["industry"] == "Tools" and "name" in response.json()


def test_an_etag_read_with_fields_admits_the_write(org, records):
    rep = client_for(org.rep)
    url = f"/api/v1/organizations/{records['organizations'].pk}/"
    etag = rep.get(f"{url}?fields=id")["ETag"]
    assert rep.patch(url, {"industry": "Tools"}, format="json", HTTP_IF_MATCH=etag).status_code == 200
    assert rep.patch(url, {"industry": "Saws"}, format="json", HTTP_IF_MATCH=etag).status_code == 412


# --- expand -------------------------------------------------------------------------------------------------------

# Per list: each relation it expands, and what the nested object of the fixture's record holds.
EXPANSIONS = {
    "deals": {
        "organization": lambda r, org: {"id": r["organizations"].pk, "name": "Acme"},
        "contact": lambda r, org: {"id": r["contacts"].pk, "first_name": "Ada", "last_name": "Buyer"},
        "owner": lambda r, org: {"id": org.rep.pk, "username": "rep", "first_name": "", "last_name": ""},
        "pipeline": lambda r, org: {"id": r["pipelines"].pk, "name": r["pipelines"].name},
        "stage": lambda r, org: {"id": r["stages"].pk, "name": r["stages"].name, "kind": "open"},
        "lost_reason": lambda r, org: None,
    },
    "leads": {
        "organization": lambda r, org: {"id": r["organizations"].pk, "name": "Acme"},
        "owner": lambda r, org: {"id": org.rep.pk, "username": "rep", "first_name": "", "last_name": ""},
        "contact": lambda r, org: None,
        "deal": lambda r, org: None,
    },
    "contacts": {
        "organization": lambda r, org: {"id": r["organizations"].pk, "name": "Acme"},
        "owner": lambda r, org: {"id": org.rep.pk, "username": "rep", "first_name": "", "last_name": ""},
    },
    "organizations": {
        "owner": lambda r, org: {"id": org.rep.pk, "username": "rep", "first_name": "", "last_name": ""},
    },
    "activities": {
        "deal": lambda r, org: {"id": r["deals"].pk, "title": "Big one"},
        "lead": lambda r, org: None,
        "owner": lambda r, org: {"id": org.rep.pk, "username": "rep", "first_name": "", "last_name": ""},
    },
    "stages": {"pipeline": lambda r, org: {"id": r["pipelines"].pk, "name": r["pipelines"].name}},
}


@pytest.mark.parametrize(
    ("resource", "relation"), [(resource, relation) for resource, names in EXPANSIONS.items() for relation in names]
)
def test_expand_nests_the_related_record_in_lists_and_record_reads(org, records, resource, relation):
    rep = client_for(org.rep)
    record = records[resource]
    expected = EXPANSIONS[resource][relation](records, org)
    listed = rep.get(f"/api/v1/{resource}/?expand={relation}")
    assert listed.status_code == 200, listed.content
    row = next(row for row in listed.json()["results"] if row["id"] == record.pk)
    assert row[relation] == expected
    plain = rep.get(f"/api/v1/{resource}/{record.pk}/")
    one = rep.get(f"/api/v1/{resource}/{record.pk}/?expand={relation}")
    assert one.json()[relation] == expected
    assert one["ETag"] == plain["ETag"]
    assert {key: value for key, value in one.json().items() if key != relation} == {
        key: value for key, value in plain.json().items() if key != relation
    }


def test_expand_and_fields_combine(org, records):
    response = client_for(org.rep).get("/api/v1/deals/?fields=id,title,amount,organization&expand=organization,owner")
    assert response.status_code == 200, response.content
    [row] = response.json()["results"]
    assert row == {
        "id": records["deals"].pk,
        "title": "Big one",
        "amount": row["amount"],
        "organization": {"id": records["organizations"].pk, "name": "Acme"},
    }


def test_a_related_record_the_caller_may_not_see_shows_its_id_alone(org, pipeline):
    # The other team's organization, named by the rep's own contact: the rep sees the contact but not the
    # organization (no deal or lead of theirs links to it).
    hidden = services.create_organization(actor=org.other_rep, name="Secret Corp")
    contact = services.create_contact(actor=org.rep, last_name="Mine", organization=hidden)
    rep = client_for(org.rep)
    assert rep.get(f"/api/v1/organizations/{hidden.pk}/").status_code == 404
    listed = rep.get("/api/v1/contacts/?expand=organization,owner").json()["results"]
    assert listed == [
        {
            **rep.get(f"/api/v1/contacts/{contact.pk}/").json(),
            "organization": {"id": hidden.pk},
            "owner": {"id": org.rep.pk, "username": "rep", "first_name": "", "last_name": ""},
        }
    ]
    assert rep.get(f"/api/v1/contacts/{contact.pk}/?expand=organization").json()["organization"] == {"id": hidden.pk}
    # The owner of a visible record may be someone the caller may not see: the other team's rep owns the
    # organization; a manager of the other team sees it whole.
    assert client_for(org.other_manager).get(f"/api/v1/organizations/{hidden.pk}/?expand=owner").json()["owner"] == {
        "id": org.other_rep.pk,
        "username": "other_rep",
        "first_name": "",
        "last_name": "",
    }
    assert client_for(org.admin).get(f"/api/v1/contacts/{contact.pk}/?expand=organization").json()["organization"] == {
        "id": hidden.pk,
        "name": "Secret Corp",
    }


def test_an_owner_the_caller_may_not_see_shows_as_an_id_alone(org, pipeline):
    # The teammate's activity on the rep's deal is on the rep's timeline; the teammate is not someone the rep sees.
    deal = make_qualified_deal(owner=org.rep, pipeline=pipeline)
    services.log_activity(actor=org.teammate, kind="call", subject="Helped", deal=deal)
    rep = client_for(org.rep)
    assert rep.get(f"/api/v1/users/{org.teammate.pk}/").status_code == 404
    [row] = rep.get("/api/v1/activities/?expand=owner,deal").json()["results"]
    assert row["owner"] == {"id": org.teammate.pk}
    assert row["deal"] == {"id": deal.pk, "title": deal.title}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/api/v1/deals/?expand=password", "Unknown: password. Name one or more of: organization, contact, owner"),
        ("/api/v1/deals/?expand=owner,,stage", "Name one or more of: organization"),
        ("/api/v1/deals/?expand=", "Name one or more of: organization"),
        ("/api/v1/leads/?expand=stage", "Unknown: stage. Name one or more of: organization, contact, owner, deal"),
        ("/api/v1/users/?expand=team", "Nothing in this list can be expanded."),
        ("/api/v1/lost-reasons/1/?expand=x", "Nothing in this list can be expanded."),
    ],
)
def test_an_unknown_expansion_answers_400_naming_the_allowed_ones(org, records, url, message):
    response = client_for(org.admin).get(url)
    assert response.status_code == 400, response.content
    assert response.json()["expand"][0].startswith(message)


def test_as_of_lists_take_fields_but_not_expand(org, records):
    from urllib.parse import quote

    from django.utils import timezone

    admin = client_for(org.admin)
    at = quote(timezone.now().isoformat())
    sparse = admin.get(f"/api/v1/deals/?as_of={at}&fields=id,stage")
    assert sparse.status_code == 200, sparse.content
    assert sparse.json()["results"] == [{"id": records["deals"].pk, "stage": records["stages"].pk}]
    refused = admin.get(f"/api/v1/deals/?as_of={at}&expand=owner")
    assert refused.status_code == 400 and "as_of" in refused.json()["expand"][0]


def test_the_schema_documents_fields_on_every_read_and_expand_where_it_applies(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    reads = 0
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        resource = path.removeprefix("/api/v1/").split("/")[0]
        is_read = path.count("/") == 4 or (path.endswith("{id}/") and path.count("/") == 5)
        if get is None or not is_read or resource in {"me", "schema", "events"} or "{task_id}" in path:
            continue
        names = {parameter["name"]: parameter for parameter in get.get("parameters", [])}
        assert "fields" in names, path
        reads += 1
    assert reads >= 25  # every list and record read of every resource
    deals = {p["name"]: p for p in schema["paths"]["/api/v1/deals/"]["get"]["parameters"]}
    assert "organization, contact, owner" in deals["expand"]["description"]
    assert "title" in deals["fields"]["description"]
    users = {p["name"] for p in schema["paths"]["/api/v1/users/"]["get"]["parameters"]}
    assert "expand" not in users


def test_a_cursor_walk_keeps_the_shape_on_every_page(org, pipeline):
    deals = [make_qualified_deal(owner=org.rep, pipeline=pipeline, title=f"Deal {n}") for n in range(3)]
    rep = client_for(org.rep)
    url, rows = "/api/v1/deals/?page_size=1&ordering=-amount&fields=id,owner&expand=owner", []
    while url:
        body = rep.get(url).json()
        rows += body["results"]
        url = body["next"]
    assert sorted(row["id"] for row in rows) == sorted(deal.pk for deal in deals)
    assert all(
        row == {"id": row["id"], "owner": {"id": org.rep.pk, "username": "rep", "first_name": "", "last_name": ""}}
        for row in rows
    )
