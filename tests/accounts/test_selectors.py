"""The visibility rule of SPEC §2 for every role, over every kind of record."""

import pytest
from django.test import override_settings

from pipeline import selectors, services
from tests.factories import make_deal

pytestmark = pytest.mark.django_db


@pytest.fixture
def records(org, pipeline):
    """One deal, lead, activity, organization and contact owned by each of rep, teammate, other_rep, manager."""
    made = {}
    for name in ("rep", "teammate", "other_rep", "manager"):
        owner = getattr(org, name)
        organization = services.create_organization(actor=owner, name=f"Org of {name}")
        contact = services.create_contact(actor=owner, last_name=f"Contact of {name}")
        deal = make_deal(owner=owner, pipeline=pipeline, title=f"Deal of {name}")
        lead = services.create_lead(actor=owner, last_name=f"Lead of {name}")
        activity = services.log_activity(actor=owner, kind="call", subject=f"Call of {name}", deal=deal)
        made[name] = {
            "deal": deal,
            "lead": lead,
            "activity": activity,
            "organization": organization,
            "contact": contact,
        }
    return made


VISIBLE = {
    "deal": selectors.visible_deals,
    "lead": selectors.visible_leads,
    "activity": selectors.visible_activities,
    "organization": selectors.visible_organizations,
    "contact": selectors.visible_contacts,
}
EDITABLE = {
    "deal": selectors.editable_deals,
    "lead": selectors.editable_leads,
    "activity": selectors.editable_activities,
}


def owners_of(queryset, records, kind) -> set[str]:
    ids = set(queryset.values_list("pk", flat=True))
    return {name for name, made in records.items() if made[kind].pk in ids}


@pytest.mark.parametrize("kind", VISIBLE)
@pytest.mark.parametrize(
    ("viewer", "expected"),
    [
        ("rep", {"rep"}),
        ("teammate", {"teammate"}),
        ("other_rep", {"other_rep"}),
        ("manager", {"rep", "teammate", "manager"}),
        ("other_manager", {"other_rep"}),
        ("idle_manager", set()),
        ("admin", {"rep", "teammate", "other_rep", "manager"}),
    ],
)
def test_who_sees_whose_records(org, records, kind, viewer, expected):
    assert owners_of(VISIBLE[kind](getattr(org, viewer)), records, kind) == expected


@pytest.mark.parametrize("kind", EDITABLE)
def test_with_team_visibility_a_rep_sees_but_does_not_edit_teammates_records(org, records, kind):
    with override_settings(REP_VISIBILITY="team"):
        assert owners_of(VISIBLE[kind](org.rep), records, kind) == {"rep", "teammate", "manager"}
        assert owners_of(EDITABLE[kind](org.rep), records, kind) == {"rep"}


def test_an_inactive_user_sees_nothing(org, records):
    org.admin.is_active = False
    org.admin.save()

    assert not selectors.visible_deals(org.admin).exists()


def test_an_activity_on_a_visible_deal_is_visible_whoever_logged_it(org, records):
    services.log_activity(actor=org.manager, kind="note", subject="Coaching note", deal=records["rep"]["deal"])

    subjects = set(selectors.visible_activities(org.rep).values_list("subject", flat=True))

    assert subjects == {"Call of rep", "Coaching note"}


def test_an_organization_of_a_visible_deal_is_visible_whoever_owns_it(org, records):
    shared = services.create_organization(actor=org.other_rep, name="Shared Co")
    services.update_deal(deal=records["rep"]["deal"], actor=org.rep, organization=shared)

    assert selectors.visible_organizations(org.rep).filter(pk=shared.pk).exists()
    assert not selectors.visible_organizations(org.teammate).filter(pk=shared.pk).exists()
