"""Mass assignment through the API (SPEC §7, issue #8): every field a client must not set, on every write.

Each case sends one hostile write and expects either a clear 4xx, or (for read-only fields, which DRF documents as
ignored on input) a success that did not take the value. Either way the database is compared row by row with a
snapshot taken before: a refused write changed nothing, an ignored field changed nothing, and a create added only
its own record (with its history and audit entry), none of the values the client tried to force.

The requester is `org.rep` unless the case says otherwise. "Theirs" are records of `org.other_rep`, another team's
rep: invisible to the rep. The rep may assign records to nobody but themself; a manager, to their team.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import ApiToken, AuditEntry, Team, User
from forecasting.models import Quota
from pipeline import services
from pipeline.models import Activity, Contact, Deal, Lead, LostReason, Organization, Pipeline, Stage, StageChange
from tests.api.conftest import client_for
from tests.factories import make_lost_reason, make_qualified_deal, stage

pytestmark = pytest.mark.django_db

SNAPSHOT_MODELS = [
    Deal,
    Lead,
    Activity,
    Organization,
    Contact,
    StageChange,
    AuditEntry,
    Pipeline,
    Stage,
    LostReason,
    Team,
    Team.managers.through,
    Quota,
    ApiToken,
]
FORCED_TIME = "2001-02-03T04:05:06Z"


# Columns that change by merely being used: authenticating with a token stamps its last use.
# Stamped by the database, not written from a request: a token's use, and a deal's last touch, which logging an
# activity on it moves (pipeline.touches; tests/pipeline/test_touches.py checks when).
UNSNAPSHOTTED = {"ApiToken": {"last_used_at"}, "Deal": {"last_touched_at"}}


def snapshot() -> dict[str, dict[int, dict]]:
    """Every row of the tables a write could touch, by model and primary key."""
    rows = {}
    for model in SNAPSHOT_MODELS:
        skip = UNSNAPSHOTTED.get(model.__name__, set())
        rows[model.__name__] = {
            row["id"]: {name: value for name, value in row.items() if name not in skip}
            for row in model.objects.order_by("pk").values()
        }
    rows["User"] = {row["id"]: row for row in User.objects.order_by("pk").values("id", "role", "team_id", "is_active")}
    return rows


class World:
    """The records the cases aim at, made through the services as the app makes them."""

    def __init__(self, org, pipeline, other_pipeline):
        self.org = org
        self.pipeline = pipeline
        self.other_pipeline = other_pipeline
        self.organization = services.create_organization(actor=org.rep, name="Mine Inc")
        self.contact = services.create_contact(actor=org.rep, last_name="Mine", organization=self.organization)
        self.deal = make_qualified_deal(
            owner=org.rep, pipeline=pipeline, title="My deal", organization=self.organization, contact=self.contact
        )
        self.lead = services.create_lead(actor=org.rep, last_name="My lead", company="Leadco")
        self.activity = services.log_activity(actor=org.rep, kind="call", subject="My call", deal=self.deal)

        self.their_organization = services.create_organization(actor=org.other_rep, name="Theirs Inc")
        self.their_contact = services.create_contact(actor=org.other_rep, last_name="Theirs")
        self.their_deal = make_qualified_deal(owner=org.other_rep, pipeline=pipeline, title="Their deal")
        self.their_lead = services.create_lead(actor=org.other_rep, last_name="Their lead")

        self.teammate_organization = services.create_organization(actor=org.teammate, name="Teammate Inc")
        self.teammate_contact = services.create_contact(actor=org.teammate, last_name="Teammate's")
        self.teammate_deal = make_qualified_deal(owner=org.teammate, pipeline=pipeline, title="Teammate's deal")
        self.teammate_lead = services.create_lead(actor=org.teammate, last_name="Teammate's lead")

        self.won = stage(pipeline, "Won")
        self.lost = stage(pipeline, "Lost")
        self.qualification = stage(pipeline, "Qualification")
        self.foreign_stage = stage(other_pipeline, "Qualification")
        self.active_reason = make_lost_reason("Price")
        self.retired_reason = make_lost_reason("Retired", is_active=False)
        self.team_quota = Quota.objects.create(
            user=org.rep, period_start="2026-10-01", period_end="2027-01-01", amount="50000.00"
        )


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: Callable[[World], str]
    body: Callable[[World], dict] | None
    status: int
    # For a success: what the record must look like afterwards (the forced value not taken).
    check: Callable[[World, Any], None] | None = None
    who: str = "rep"
    headers: dict = field(default_factory=dict)
    # REP_VISIBILITY: with "team" a rep sees their teammates' records, and still may not change them.
    visibility: str = "own"


def created(model):
    return lambda response: model.objects.get(pk=response.json()["id"])


def _resolve(extra: dict, w: World) -> dict:
    return {name: value(w) if callable(value) else value for name, value in extra.items()}


def deal_create(forced: dict) -> Callable[[World], dict]:
    return lambda w: {"title": "New deal", **_resolve(forced, w)}


def lead_create(forced: dict) -> Callable[[World], dict]:
    return lambda w: {"last_name": "New lead", **_resolve(forced, w)}


def activity_create(forced: dict) -> Callable[[World], dict]:
    return lambda w: {"kind": "call", "subject": "New call", "deal": w.deal.pk, **_resolve(forced, w)}


def organization_create(forced: dict) -> Callable[[World], dict]:
    return lambda w: {"name": "New Inc", **_resolve(forced, w)}


def contact_create(forced: dict) -> Callable[[World], dict]:
    return lambda w: {"last_name": "New contact", **_resolve(forced, w)}


# PUT needs the required fields; these are the records' current values, so that only the forced field differs.
PUT_BASE = {
    "deals": lambda w: {"title": w.deal.title},
    "leads": lambda w: {"last_name": w.lead.last_name},
    "activities": lambda w: {"kind": w.activity.kind, "subject": w.activity.subject},
    "organizations": lambda w: {"name": w.organization.name},
    "contacts": lambda w: {"last_name": w.contact.last_name},
}
MINE = {
    "deals": lambda w: w.deal.pk,
    "leads": lambda w: w.lead.pk,
    "activities": lambda w: w.activity.pk,
    "organizations": lambda w: w.organization.pk,
    "contacts": lambda w: w.contact.pk,
}


def updates(resource: str, case_id: str, forced: dict, status: int, **kwargs) -> list[Case]:
    """The same forced fields through PATCH and PUT of the rep's own record."""
    path = lambda w: f"/api/v1/{resource}/{MINE[resource](w)}/"  # noqa: E731
    return [
        Case(f"{resource} patch {case_id}", "patch", path, lambda w: _resolve(forced, w), status, **kwargs),
        Case(
            f"{resource} put {case_id}",
            "put",
            path,
            lambda w: {**PUT_BASE[resource](w), **_resolve(forced, w)},
            status,
            **kwargs,
        ),
    ]


def unchanged(w: World, response) -> None:
    """An update whose only content was ignored answers 200 with the record as it was (checked in the DB too)."""
    assert response.status_code == 200


BOOKKEEPING = {
    "id": 999999,
    "created_at": FORCED_TIME,
    "updated_at": FORCED_TIME,
}
DEAL_LIFECYCLE = {
    "status": "won",
    "closed_at": FORCED_TIME,
    "stage_entered_at": FORCED_TIME,
    "forecast_category": "commit",
    "stage": lambda w: w.won.pk,
    "pipeline": lambda w: w.other_pipeline.pk,
    "lost_reason": lambda w: w.active_reason.pk,
}
LEAD_LIFECYCLE = {
    "status": "converted",
    "deal": lambda w: w.their_deal.pk,
    "converted_at": FORCED_TIME,
    "sql_at": FORCED_TIME,
    "disqualified_at": FORCED_TIME,
    "disqualified_reason": "forced",
}


def _created_deal_is_fresh(w: World, response) -> None:
    deal = created(Deal)(response)
    assert deal.pk != 999999
    assert deal.status == "open" and deal.stage == stage(w.pipeline, "Prospecting")
    assert deal.closed_at is None and deal.lost_reason is None and deal.version == 1
    assert deal.created_at > timezone.now() - timedelta(minutes=5)
    assert deal.stage_entered_at == deal.created_at
    assert deal.forecast_category == "pipeline"
    assert list(deal.stage_changes.values_list("from_stage", "to_stage")) == [(None, deal.stage_id)]


def _created_lead_is_fresh(w: World, response) -> None:
    lead = created(Lead)(response)
    assert lead.pk != 999999 and lead.deal is None
    assert lead.status == "new" and lead.converted_at is None and lead.sql_at is None
    assert lead.disqualified_at is None and lead.disqualified_reason == ""
    assert lead.created_at > timezone.now() - timedelta(minutes=5)


def _created_with_fresh_bookkeeping(model) -> Callable[[World, Any], None]:
    def check(w: World, response) -> None:
        record = created(model)(response)
        assert record.pk != 999999
        assert record.created_at > timezone.now() - timedelta(minutes=5)
        assert record.updated_at > timezone.now() - timedelta(minutes=5)
        assert record.owner_id == w.org.rep.pk

    return check


CASES: list[Case] = [
    # --- Deals: create ------------------------------------------------------------------------------------------
    Case("deals create owner another team's rep", "post", lambda w: "/api/v1/deals/",
         deal_create({"owner": lambda w: w.org.other_rep.pk}), 404),
    Case("deals create owner teammate", "post", lambda w: "/api/v1/deals/",
         deal_create({"owner": lambda w: w.org.teammate.pk}), 404),
    Case("deals create owner another team's rep by a manager", "post", lambda w: "/api/v1/deals/",
         deal_create({"owner": lambda w: w.org.other_rep.pk}), 404, who="manager"),
    Case("deals create owner no such user", "post", lambda w: "/api/v1/deals/", deal_create({"owner": 999999}), 404),
    Case("deals create invisible organization", "post", lambda w: "/api/v1/deals/",
         deal_create({"organization": lambda w: w.their_organization.pk}), 404),
    Case("deals create invisible contact", "post", lambda w: "/api/v1/deals/",
         deal_create({"contact": lambda w: w.their_contact.pk}), 404),
    Case("deals create no such pipeline", "post", lambda w: "/api/v1/deals/", deal_create({"pipeline": 999999}), 400),
    Case("deals create no such stage", "post", lambda w: "/api/v1/deals/", deal_create({"stage": 999999}), 400),
    Case("deals create stage of another pipeline", "post", lambda w: "/api/v1/deals/",
         deal_create({"pipeline": lambda w: w.pipeline.pk, "stage": lambda w: w.foreign_stage.pk}), 400),
    Case("deals create lost without a reason", "post", lambda w: "/api/v1/deals/",
         deal_create({"stage": lambda w: w.lost.pk}), 400),
    Case("deals create lost for a retired reason", "post", lambda w: "/api/v1/deals/",
         deal_create({"stage": lambda w: w.lost.pk, "lost_reason": lambda w: w.retired_reason.pk}), 400),
    Case("deals create no such lost reason", "post", lambda w: "/api/v1/deals/",
         deal_create({"stage": lambda w: w.lost.pk, "lost_reason": 999999}), 400),
    Case("deals create bookkeeping and lifecycle fields", "post", lambda w: "/api/v1/deals/",
         deal_create({**BOOKKEEPING, "version": 7, "status": "won", "closed_at": FORCED_TIME,
                      "stage_entered_at": FORCED_TIME, "forecast_category": "commit"}),
         201, check=_created_deal_is_fresh),
    # --- Deals: update --------------------------------------------------------------------------------------------
    *updates("deals", "owner another team's rep", {"owner": lambda w: w.org.other_rep.pk}, 404),
    *updates("deals", "owner teammate", {"owner": lambda w: w.org.teammate.pk}, 404),
    *updates("deals", "invisible organization", {"organization": lambda w: w.their_organization.pk}, 404),
    *updates("deals", "invisible contact", {"contact": lambda w: w.their_contact.pk}, 404),
    *updates("deals", "stale version", {"version": 99, "title": "Lost update"}, 409),
    *updates("deals", "bookkeeping", BOOKKEEPING, 200, check=unchanged),
    *updates("deals", "won without the move endpoint", DEAL_LIFECYCLE, 200, check=unchanged),
    Case("deals patch stale If-Match", "patch", lambda w: f"/api/v1/deals/{w.deal.pk}/", lambda w: {"title": "X"},
         412, headers={"HTTP_IF_MATCH": 'W/"99"'}),
    Case("deals patch another team's deal", "patch", lambda w: f"/api/v1/deals/{w.their_deal.pk}/",
         lambda w: {"owner": w.org.rep.pk}, 404),
    Case("deals put another team's deal", "put", lambda w: f"/api/v1/deals/{w.their_deal.pk}/",
         lambda w: {"title": "Mine now", "owner": w.org.rep.pk}, 404),
    Case("deals delete", "delete", lambda w: f"/api/v1/deals/{w.deal.pk}/", None, 405),
    Case("deals audit trail written to", "post", lambda w: f"/api/v1/deals/{w.deal.pk}/audit/",
         lambda w: {"action": "deleted", "changes": {}}, 405),
    Case("deals history written to", "post", lambda w: f"/api/v1/deals/{w.deal.pk}/history/",
         lambda w: {"to_stage": w.won.pk}, 405),
    # --- Deals: move ----------------------------------------------------------------------------------------------
    Case("deals move stage of another pipeline", "post", lambda w: f"/api/v1/deals/{w.deal.pk}/move/",
         lambda w: {"stage": w.foreign_stage.pk}, 400),
    Case("deals move no such stage", "post", lambda w: f"/api/v1/deals/{w.deal.pk}/move/",
         lambda w: {"stage": 999999}, 400),
    Case("deals move lost without a reason", "post", lambda w: f"/api/v1/deals/{w.deal.pk}/move/",
         lambda w: {"stage": w.lost.pk}, 400),
    Case("deals move lost for a retired reason", "post", lambda w: f"/api/v1/deals/{w.deal.pk}/move/",
         lambda w: {"stage": w.lost.pk, "lost_reason": w.retired_reason.pk}, 400),
    Case("deals move invisible organization", "post", lambda w: f"/api/v1/deals/{w.deal.pk}/move/",
         lambda w: {"stage": w.qualification.pk, "organization": w.their_organization.pk}, 404),
    Case("deals move invisible contact", "post", lambda w: f"/api/v1/deals/{w.deal.pk}/move/",
         lambda w: {"stage": w.qualification.pk, "contact": w.their_contact.pk}, 404),
    Case("deals move stale version", "post", lambda w: f"/api/v1/deals/{w.deal.pk}/move/",
         lambda w: {"stage": w.qualification.pk, "version": 99}, 409),
    Case("deals move stale If-Match", "post", lambda w: f"/api/v1/deals/{w.deal.pk}/move/",
         lambda w: {"stage": w.qualification.pk}, 412, headers={"HTTP_IF_MATCH": 'W/"99"'}),
    Case("deals move another team's deal", "post", lambda w: f"/api/v1/deals/{w.their_deal.pk}/move/",
         lambda w: {"stage": w.qualification.pk}, 404),
    Case("deals move forces owner, status and times", "post", lambda w: f"/api/v1/deals/{w.deal.pk}/move/",
         lambda w: {"stage": w.deal.stage_id, **_resolve({**BOOKKEEPING, **DEAL_LIFECYCLE, "owner": w.org.other_rep.pk,
                                                          "stage": w.deal.stage_id}, w)},
         200, check=unchanged),
    # --- Leads ----------------------------------------------------------------------------------------------------
    Case("leads create owner another team's rep", "post", lambda w: "/api/v1/leads/",
         lead_create({"owner": lambda w: w.org.other_rep.pk}), 404),
    Case("leads create owner teammate", "post", lambda w: "/api/v1/leads/",
         lead_create({"owner": lambda w: w.org.teammate.pk}), 404),
    Case("leads create invisible organization", "post", lambda w: "/api/v1/leads/",
         lead_create({"organization": lambda w: w.their_organization.pk}), 404),
    Case("leads create invisible contact", "post", lambda w: "/api/v1/leads/",
         lead_create({"contact": lambda w: w.their_contact.pk}), 404),
    Case("leads create converted", "post", lambda w: "/api/v1/leads/", lead_create({"status": "converted"}), 400),
    Case("leads create bookkeeping and lifecycle fields", "post", lambda w: "/api/v1/leads/",
         lead_create({**BOOKKEEPING, **{k: v for k, v in LEAD_LIFECYCLE.items() if k != "status"}}),
         201, check=_created_lead_is_fresh),
    *updates("leads", "owner another team's rep", {"owner": lambda w: w.org.other_rep.pk}, 404),
    *updates("leads", "owner teammate", {"owner": lambda w: w.org.teammate.pk}, 404),
    *updates("leads", "invisible organization", {"organization": lambda w: w.their_organization.pk}, 404),
    *updates("leads", "invisible contact", {"contact": lambda w: w.their_contact.pk}, 404),
    *updates("leads", "bookkeeping", BOOKKEEPING, 200, check=unchanged),
    *updates("leads", "converted without converting", LEAD_LIFECYCLE, 200, check=unchanged),
    Case("leads patch stale If-Match", "patch", lambda w: f"/api/v1/leads/{w.lead.pk}/",
         lambda w: {"score": 90}, 412, headers={"HTTP_IF_MATCH": 'W/"stale"'}),
    Case("leads patch another team's lead", "patch", lambda w: f"/api/v1/leads/{w.their_lead.pk}/",
         lambda w: {"owner": w.org.rep.pk}, 404),
    Case("leads status converted", "post", lambda w: f"/api/v1/leads/{w.lead.pk}/status/",
         lambda w: {"status": "converted"}, 400),
    Case("leads convert invisible organization", "post", lambda w: f"/api/v1/leads/{w.lead.pk}/convert/",
         lambda w: {"organization": w.their_organization.pk}, 404),
    Case("leads convert invisible contact", "post", lambda w: f"/api/v1/leads/{w.lead.pk}/convert/",
         lambda w: {"contact": w.their_contact.pk}, 404),
    Case("leads convert stage of another pipeline", "post", lambda w: f"/api/v1/leads/{w.lead.pk}/convert/",
         lambda w: {"pipeline": w.pipeline.pk, "stage": w.foreign_stage.pk}, 400),
    Case("leads convert into a lost stage", "post", lambda w: f"/api/v1/leads/{w.lead.pk}/convert/",
         lambda w: {"stage": w.lost.pk}, 400),
    Case("leads convert another team's lead", "post", lambda w: f"/api/v1/leads/{w.their_lead.pk}/convert/",
         lambda w: {}, 404),
    Case("leads delete", "delete", lambda w: f"/api/v1/leads/{w.lead.pk}/", None, 405),
    # --- Activities -----------------------------------------------------------------------------------------------
    Case("activities create on an invisible deal", "post", lambda w: "/api/v1/activities/",
         lambda w: {"kind": "call", "subject": "Sneaky", "deal": w.their_deal.pk}, 404),
    Case("activities create on an invisible lead", "post", lambda w: "/api/v1/activities/",
         lambda w: {"kind": "call", "subject": "Sneaky", "lead": w.their_lead.pk}, 404),
    Case("activities create owner another team's rep", "post", lambda w: "/api/v1/activities/",
         activity_create({"owner": lambda w: w.org.other_rep.pk}), 404),
    Case("activities create owner teammate", "post", lambda w: "/api/v1/activities/",
         activity_create({"owner": lambda w: w.org.teammate.pk}), 404),
    Case("activities create bookkeeping", "post", lambda w: "/api/v1/activities/",
         activity_create(BOOKKEEPING), 201, check=_created_with_fresh_bookkeeping(Activity)),
    *updates("activities", "owner another team's rep", {"owner": lambda w: w.org.other_rep.pk}, 404),
    *updates("activities", "moved to an invisible deal", {"deal": lambda w: w.their_deal.pk}, 200, check=unchanged),
    *updates("activities", "moved to an invisible lead", {"lead": lambda w: w.their_lead.pk}, 200, check=unchanged),
    *updates("activities", "bookkeeping and done time", {**BOOKKEEPING, "done_at": FORCED_TIME}, 200, check=unchanged),
    Case("activities delete", "delete", lambda w: f"/api/v1/activities/{w.activity.pk}/", None, 405),
    # --- Organizations --------------------------------------------------------------------------------------------
    Case("organizations create owner another team's rep", "post", lambda w: "/api/v1/organizations/",
         organization_create({"owner": lambda w: w.org.other_rep.pk}), 404),
    Case("organizations create bookkeeping", "post", lambda w: "/api/v1/organizations/",
         organization_create(BOOKKEEPING), 201, check=_created_with_fresh_bookkeeping(Organization)),
    *updates("organizations", "owner another team's rep", {"owner": lambda w: w.org.other_rep.pk}, 404),
    *updates("organizations", "owner teammate", {"owner": lambda w: w.org.teammate.pk}, 404),
    *updates("organizations", "bookkeeping", BOOKKEEPING, 200, check=unchanged),
    Case("organizations patch another team's", "patch",
         lambda w: f"/api/v1/organizations/{w.their_organization.pk}/", lambda w: {"owner": w.org.rep.pk}, 404),
    Case("organizations delete", "delete", lambda w: f"/api/v1/organizations/{w.organization.pk}/", None, 405),
    # --- Contacts -------------------------------------------------------------------------------------------------
    Case("contacts create owner another team's rep", "post", lambda w: "/api/v1/contacts/",
         contact_create({"owner": lambda w: w.org.other_rep.pk}), 404),
    Case("contacts create invisible organization", "post", lambda w: "/api/v1/contacts/",
         contact_create({"organization": lambda w: w.their_organization.pk}), 404),
    Case("contacts create bookkeeping", "post", lambda w: "/api/v1/contacts/",
         contact_create(BOOKKEEPING), 201, check=_created_with_fresh_bookkeeping(Contact)),
    *updates("contacts", "owner another team's rep", {"owner": lambda w: w.org.other_rep.pk}, 404),
    *updates("contacts", "owner teammate", {"owner": lambda w: w.org.teammate.pk}, 404),
    *updates("contacts", "invisible organization", {"organization": lambda w: w.their_organization.pk}, 404),
    *updates("contacts", "bookkeeping", BOOKKEEPING, 200, check=unchanged),
    Case("contacts patch another team's", "patch", lambda w: f"/api/v1/contacts/{w.their_contact.pk}/",
         lambda w: {"owner": w.org.rep.pk}, 404),
    Case("contacts delete", "delete", lambda w: f"/api/v1/contacts/{w.contact.pk}/", None, 405),
    # --- Seen but not theirs: a rep who may see their team's records (REP_VISIBILITY=team) -----------------------
    Case("team visibility: deals patch a teammate's deal", "patch",
         lambda w: f"/api/v1/deals/{w.teammate_deal.pk}/", lambda w: {"owner": w.org.rep.pk}, 403, visibility="team"),
    Case("team visibility: deals move a teammate's deal", "post",
         lambda w: f"/api/v1/deals/{w.teammate_deal.pk}/move/", lambda w: {"stage": w.qualification.pk}, 403,
         visibility="team"),
    Case("team visibility: deals create owner teammate", "post", lambda w: "/api/v1/deals/",
         deal_create({"owner": lambda w: w.org.teammate.pk}), 404, visibility="team"),
    Case("team visibility: deals patch owner teammate", "patch", lambda w: f"/api/v1/deals/{w.deal.pk}/",
         lambda w: {"owner": w.org.teammate.pk}, 404, visibility="team"),
    Case("team visibility: leads patch a teammate's lead", "patch",
         lambda w: f"/api/v1/leads/{w.teammate_lead.pk}/", lambda w: {"owner": w.org.rep.pk}, 403, visibility="team"),
    Case("team visibility: leads convert a teammate's lead", "post",
         lambda w: f"/api/v1/leads/{w.teammate_lead.pk}/convert/", lambda w: {}, 403, visibility="team"),
    Case("team visibility: activities create on a teammate's deal", "post", lambda w: "/api/v1/activities/",
         lambda w: {"kind": "call", "subject": "Sneaky", "deal": w.teammate_deal.pk}, 404, visibility="team"),
    Case("team visibility: activities create on a teammate's lead", "post", lambda w: "/api/v1/activities/",
         lambda w: {"kind": "call", "subject": "Sneaky", "lead": w.teammate_lead.pk}, 404, visibility="team"),
    Case("team visibility: organizations patch a teammate's", "patch",
         lambda w: f"/api/v1/organizations/{w.teammate_organization.pk}/", lambda w: {"name": "Mine now"}, 403,
         visibility="team"),
    Case("team visibility: contacts patch a teammate's", "patch",
         lambda w: f"/api/v1/contacts/{w.teammate_contact.pk}/", lambda w: {"owner": w.org.rep.pk}, 403,
         visibility="team"),
    Case("activities create on a deal and a lead at once", "post", lambda w: "/api/v1/activities/",
         lambda w: {"kind": "call", "subject": "Both", "deal": w.deal.pk, "lead": w.lead.pk}, 400),
    # --- Who one is: role, team, configuration, quotas, tokens --------------------------------------------------
    Case("me role admin", "patch", lambda w: "/api/v1/me/", lambda w: {"role": "admin"}, 405),
    Case("users role admin", "patch", lambda w: f"/api/v1/users/{w.org.rep.pk}/",
         lambda w: {"role": "admin", "team": w.org.other_team.pk}, 405),
    Case("teams made manager of", "patch", lambda w: f"/api/v1/teams/{w.org.other_team.pk}/",
         lambda w: {"managers": [w.org.rep.pk]}, 403),
    Case("teams created", "post", lambda w: "/api/v1/teams/", lambda w: {"name": "Mine", "managers": [w.org.rep.pk]},
         403),
    Case("stages probability", "patch", lambda w: f"/api/v1/stages/{w.qualification.pk}/",
         lambda w: {"probability": 99}, 403),
    Case("pipelines made default", "patch", lambda w: f"/api/v1/pipelines/{w.other_pipeline.pk}/",
         lambda w: {"is_default": True}, 403),
    Case("lost reasons reactivated", "patch", lambda w: f"/api/v1/lost-reasons/{w.retired_reason.pk}/",
         lambda w: {"is_active": True}, 403),
    Case("quotas created by a rep", "post", lambda w: "/api/v1/quotas/",
         lambda w: {"user": w.org.rep.pk, "period_start": "2027-01-01", "period_end": "2027-04-01", "amount": "1.00"},
         403),
    Case("quotas a manager sets for themself", "post", lambda w: "/api/v1/quotas/",
         lambda w: {"user": w.org.manager.pk, "period_start": "2027-01-01", "period_end": "2027-04-01",
                    "amount": "1.00"}, 400, who="manager"),
    Case("quotas a manager sets for another team's rep", "post", lambda w: "/api/v1/quotas/",
         lambda w: {"user": w.org.other_rep.pk, "period_start": "2027-01-01", "period_end": "2027-04-01",
                    "amount": "1.00"}, 400, who="manager"),
    Case("quotas a manager moves to another team's rep", "patch", lambda w: f"/api/v1/quotas/{w.team_quota.pk}/",
         lambda w: {"user": w.org.other_rep.pk}, 400, who="manager"),
    Case("quotas a rep changes their own", "patch", lambda w: f"/api/v1/quotas/{w.team_quota.pk}/",
         lambda w: {"amount": "1.00"}, 403),
    Case("tokens created for someone else", "post", lambda w: "/api/v1/tokens/",
         lambda w: {"name": "theirs", "user": w.org.other_rep.pk, "revoked_at": None, "prefix": "forced",
                    "last_used_at": FORCED_TIME, **BOOKKEEPING},
         201, check=lambda w, r: _token_is_the_requesters(w, r)),
]  # fmt: skip


def _token_is_the_requesters(w: World, response) -> None:
    token = ApiToken.objects.get(pk=response.json()["id"])
    assert token.user == w.org.rep
    assert token.prefix != "forced" and token.last_used_at is None and token.pk != 999999


RESOURCE_MODELS = {
    "deals": Deal,
    "leads": Lead,
    "activities": Activity,
    "organizations": Organization,
    "contacts": Contact,
    "tokens": ApiToken,
}
# Records a create may add besides its own row: a deal's first StageChange, and the audit entry of any create.
CREATION_SIDE_ROWS = {"StageChange", "AuditEntry"}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_hostile_write_is_refused_or_ignored_and_the_database_keeps_its_rows(
    case, org, pipeline, other_pipeline, settings
):
    settings.REP_VISIBILITY = case.visibility
    w = World(org, pipeline, other_pipeline)
    client = client_for(getattr(org, case.who))
    before = snapshot()

    response = getattr(client, case.method)(
        case.path(w), case.body(w) if case.body else None, format="json", **case.headers
    )

    assert response.status_code == case.status, response.content
    after = snapshot()
    if response.status_code >= 400:
        # A clear answer: JSON naming the field or saying why, never an HTML page.
        assert isinstance(response.json(), dict) and response.json()
        assert after == before
        return
    case.check(w, response)
    if response.status_code == 200:
        assert after == before
        return
    for model, rows in before.items():
        assert {pk: after[model][pk] for pk in rows} == rows, f"a create changed existing {model} rows"
    added = {model: set(after[model]) - set(rows) for model, rows in before.items()}
    created_model = RESOURCE_MODELS[case.path(w).split("/")[3]].__name__
    assert added.pop(created_model) == {response.json()["id"]}
    assert all(not pks for model, pks in added.items() if model not in CREATION_SIDE_ROWS), added
