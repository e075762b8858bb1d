"""Search (issue 21 item 2): the deals' (board and API), organizations' and contacts' searches find exactly what a
plain-Python filter over the same rows finds, for every role, and the trigram indexes that serve them exist."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from pipeline import selectors, services
from pipeline.models import Contact, Deal, Organization
from tests.api.conftest import client_for
from tests.factories import make_deal, make_pipeline

# Cases, accents, a term inside a word, two terms (both must match), a term matching only through a join, terms of
# 1 and 2 characters (no trigram: answered by a scan), and one that matches nothing.
# "renewalacme" runs from one deal's title into its organization's name: no match, as each part is its own.
TERMS = [
    "acme", "ACME", "cme", "zoë", "ZOË", "zoe", "ångs", "ext-7", "acme renewal", "walker", "a", "ör", "zzqx",
    "renewalacme",
]  # fmt: skip
ROLES = ["rep", "teammate", "other_rep", "manager", "other_manager", "admin"]


@pytest.fixture
def customers(org, pipeline):
    """Organizations, contacts and deals owned across both teams, with names that only some terms match."""
    acme = services.create_organization(actor=org.rep, name="Acme Corp", website="https://acme.example.com")
    zoe = services.create_organization(actor=org.other_rep, name="Zoë Ångström AB", external_id="EXT-77")
    plain = services.create_organization(actor=org.teammate, name="Initech", website="https://initech.example")
    walker = services.create_contact(actor=org.teammate, first_name="Alan", last_name="Walker", email="a@w.example")
    zoe_contact = services.create_contact(actor=org.other_rep, first_name="ZOË", last_name="Örn", external_id="c-1")
    other = make_pipeline(name="Renewals")
    rows = [
        (org.rep, {"title": "Acme renewal", "organization": acme}),
        (org.rep, {"title": "Widgets", "organization": acme, "external_id": "EXT-7"}),
        (org.teammate, {"title": "ACME expansion", "contact": walker}),
        (org.teammate, {"title": "Initech pilot", "organization": plain}),
        (org.other_rep, {"title": "Big deal", "organization": zoe, "contact": zoe_contact}),
        (org.other_rep, {"title": "acme renewal (West)", "organization": zoe}),
        (org.manager, {"title": "Zoe without accent"}),
    ]
    deals = [make_deal(owner=owner, pipeline=pipeline, **fields) for owner, fields in rows]
    deals.append(make_deal(owner=org.rep, pipeline=other, title="Acme in another pipeline"))
    return deals


def _contains_every(term_text: str, values: list) -> bool:
    texts = [value.lower() for value in values if value]
    return all(any(term.lower() in text for text in texts) for term in term_text.split())


def _deal_values(deal: Deal) -> list:
    contact = deal.contact
    return [
        deal.title,
        deal.external_id,
        deal.organization.name if deal.organization else None,
        contact.first_name if contact else None,
        contact.last_name if contact else None,
    ]


def _visible_owners(org, role: str) -> set:
    # The visibility rule of SPEC §2 written out: a rep their own, a manager their team's members, an admin all.
    user = getattr(org, role)
    if user.is_admin:
        return {deal.owner_id for deal in Deal.objects.all()}
    if user.is_manager:
        return {member.pk for team in user.managed_teams.all() for member in team.members.all()}
    return {user.pk}


def _listed_ids(user, path: str) -> set[int]:
    client, ids = client_for(user), set()
    while path:
        body = client.get(path).json()
        ids.update(row["id"] for row in body["results"])
        path = body["next"]
    return ids


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_deal_search_equals_a_python_filter_in_the_api_and_on_the_board(org, pipeline, customers, role):
    _check_deal_search(org, pipeline, role)


@pytest.mark.django_db
@pytest.mark.parametrize("visibility", ["own", "team"])
@pytest.mark.parametrize("role", ROLES)
def test_a_searched_list_sees_the_same_deals_with_the_owners_as_constants(org, customers, settings, role, visibility):
    # The visible owners are read first so that the planner sees whose deals (and how many) the search narrows.
    settings.REP_VISIBILITY = visibility
    user = getattr(org, role)
    searched = selectors.visible_deals(user, searched=True)
    assert set(searched.values_list("pk", flat=True)) == set(selectors.visible_deals(user).values_list("pk", flat=True))
    sql, params = searched.query.sql_with_params()
    if user.is_admin:
        assert " WHERE " not in sql
        return
    # SPEC §2: a manager sees their teams' members and themselves, a rep themselves (and their team, by setting).
    teams = list(user.managed_teams.all()) if user.is_manager else [user.team] if visibility == "team" else []
    owners = {user.pk} | {member.pk for team in teams for member in team.members.all()}
    if len(owners) == 1:
        assert '"owner_id" = %s' in sql and params == (user.pk,)
    else:
        assert '"owner_id" = ANY(%s::bigint[])' in sql and "SELECT U0" not in sql
        assert {int(pk) for pk in params[0].strip("{}").split(",")} == owners


def _check_deal_search(org, pipeline, role: str) -> None:
    user = getattr(org, role)
    owners = _visible_owners(org, role)
    deals = list(Deal.objects.select_related("organization", "contact"))
    for term in TERMS:
        expected = {deal.pk for deal in deals if deal.owner_id in owners and _contains_every(term, _deal_values(deal))}
        assert _listed_ids(user, f"/api/v1/deals/?search={term}&page_size=2") == expected, term
        on_board = expected & {deal.pk for deal in deals if deal.pipeline_id == pipeline.pk}
        board = selectors.board_deals(user=user, pipeline=pipeline, text=term)
        assert set(board.values_list("pk", flat=True)) == on_board, term
    # The fixture is such that the search is not empty nor everything for a rep: another rep's deal is never found.
    if role == "rep":
        found = _listed_ids(user, "/api/v1/deals/?search=acme")
        assert found and {Deal.objects.get(pk=pk).owner for pk in found} == {org.rep}


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_organization_and_contact_search_equal_a_python_filter(org, customers, role):
    user = getattr(org, role)
    organizations = list(selectors.visible_organizations(user))
    contacts = list(selectors.visible_contacts(user))
    for term in TERMS:
        expected_organizations = {
            o.pk for o in organizations if _contains_every(term, [o.name, o.website, o.external_id])
        }
        assert _listed_ids(user, f"/api/v1/organizations/?search={term}") == expected_organizations, term
        expected_contacts = {
            c.pk for c in contacts if _contains_every(term, [c.first_name, c.last_name, c.email, c.external_id])
        }
        assert _listed_ids(user, f"/api/v1/contacts/?search={term}") == expected_contacts, term
    assert Organization.objects.count() == 3 and Contact.objects.count() >= 2


TRIGRAM_INDEXES = {
    "deal_search_trgm_idx": ("pipeline_deal", "search_text"),
    "organization_name_trgm_idx": ("pipeline_organization", "name"),
    "organization_website_trgm_idx": ("pipeline_organization", "website"),
    "organization_extid_trgm_idx": ("pipeline_organization", "external_id"),
    "contact_first_name_trgm_idx": ("pipeline_contact", "first_name"),
    "contact_last_name_trgm_idx": ("pipeline_contact", "last_name"),
    "contact_email_trgm_idx": ("pipeline_contact", "email"),
    "contact_extid_trgm_idx": ("pipeline_contact", "external_id"),
}


def _trigram_indexes() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexdef LIKE '%%gin_trgm_ops%%'")
        return dict(cursor.fetchall())


@pytest.mark.django_db
def test_every_searched_column_has_a_trigram_index_on_the_expression_icontains_compares():
    indexes = _trigram_indexes()
    assert set(indexes) == set(TRIGRAM_INDEXES)
    for name, (table, column) in TRIGRAM_INDEXES.items():
        # UPPER(column): Django's icontains is `UPPER(column::text) LIKE UPPER(%s)` on PostgreSQL (a text column
        # needs no cast, and PostgreSQL writes none).
        expression = column if column == "search_text" else f"({column})::text"
        assert f"ON public.{table} USING gin (upper({expression}) gin_trgm_ops)" in indexes[name]


@pytest.mark.django_db(transaction=True)
def test_the_trigram_migration_is_reversible():
    executor = MigrationExecutor(connection)
    (migration,) = [key for key in executor.loader.graph.nodes if key[1].endswith("_search_trigram_indexes")]
    (before,) = executor.loader.graph.node_map[migration].parents
    executor.migrate([before.key])
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'")
        (extensions,) = cursor.fetchone()
    undone = _trigram_indexes()
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert (undone, extensions) == ({}, 0)
    assert set(_trigram_indexes()) == set(TRIGRAM_INDEXES)
