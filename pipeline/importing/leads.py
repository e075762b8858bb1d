"""Importing leads, with the times they reached each status.

The status stamps follow the app's rule (`services.advance_lead`): a lead has passed through every status on the
path new → contacted → mql → sql → converted up to its status, and each `*_at` is the first time it was reached.
Stamps the file gives are kept as they are (a lead moved back keeps later stamps). A stamp the path needs but the
file leaves empty is the next later stamp the file gives (a skipped status was passed through then), else the
latest earlier one, else `created_at`: so an imported lead counts in "qualified leads in month M", lead velocity
and MQL→SQL rates like one made in the app. A disqualified lead without `disqualified_at` was disqualified at its
latest stamp. A converted lead names its deal (by external id) and, without `converted_at`, was converted when
that deal was created. An existing converted lead keeps its status, as in the app.
"""

from datetime import datetime

from django.db.models import QuerySet

from pipeline.importing.base import Row
from pipeline.importing.customers import UpsertImporter, read_person_name
from pipeline.importing.reading import MAX_LINE_CHARS
from pipeline.importing.references import Contacts, Organizations, deals_by_reference
from pipeline.models import LEAD_STATUS_PATH, Contact, Deal, Lead, LeadStatus, Organization
from pipeline.selectors import editable_deals, editable_leads, visible_contacts, visible_organizations

STAMPS = ("contacted_at", "mql_at", "sql_at", "converted_at", "disqualified_at")
PATH_STAMPS = [f"{status}_at" for status in LEAD_STATUS_PATH[1:]]
_STATUS_NAMES = {
    **{status.value: status.value for status in LeadStatus},
    **{status.label.lower(): status.value for status in LeadStatus},
    "marketing qualified lead": LeadStatus.MQL,
    "sales qualified lead": LeadStatus.SQL,
}


class LeadImporter(UpsertImporter):
    model = Lead
    updatable = (
        "first_name", "last_name", "email", "phone", "company", "job_title", "source", "status", "score", "owner",
        "organization", "contact", "deal", "budget", "authority", "need", "timeline", "disqualified_reason",
        "created_at", *STAMPS,
    )  # fmt: skip
    always_set = ("first_name", "last_name", "status", "deal", *STAMPS)

    def changeable(self) -> QuerySet:
        return self.scoped(Lead, editable_leads)

    def describe(self, values: dict) -> str:
        name = f"{values['first_name']} {values['last_name']}".strip()
        return f"{name} ({values['company']})" if values["company"] else name

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.organizations = Organizations(
            create_missing=self.options.create_missing, queryset=self.scoped(Organization, visible_organizations)
        )
        self.contacts = Contacts(
            create_missing=self.options.create_missing, queryset=self.scoped(Contact, visible_contacts)
        )
        self.deals: dict[str, dict] = {}
        self.deal_rows: dict[int, int] = {}  # deal id → the row converting into it

    def prefetch(self, chunk) -> None:
        self.organizations.prefetch(self.value_map("organization", cells.get("organization", "")) for _, cells in chunk)
        self.contacts.prefetch(self.value_map("contact", cells.get("contact", "")) for _, cells in chunk)
        wanted = {cells["deal"].strip() for _, cells in chunk if cells.get("deal", "").strip()} - set(self.deals)
        deals = self.scoped(Deal, editable_deals)
        self.deals.update(deals_by_reference(deals, wanted, "id", "external_id", "created_at", "lead__id"))

    def new_references(self) -> dict[str, int]:
        counts = super().new_references()
        for noun, source in (("organizations", self.organizations), ("contacts", self.contacts)):
            if source.new:
                counts[noun] = len(source.new)
        return counts

    def write_references(self) -> None:
        self.organizations.write()
        self.contacts.write()

    def read(self, row: Row, current: dict | None) -> dict:
        owner = row.reference("owner", self.owners.resolve_owner)
        if owner is None and not row.mapped("owner"):
            owner = current["owner_id"] if current else (self.actor.pk if self.actor else None)
            if owner is None:
                row.fail("owner", "A lead needs an owner (fill the owner column, or import as a user).")
        organization = row.reference("organization", self.organizations.resolve, owner=owner)
        values = {
            **read_person_name(row, current, noun="lead"),
            "email": row.email("email"),
            "owner": owner,
            "organization": organization,
            "contact": row.reference("contact", self.contacts.resolve, organization=organization, owner=owner),
            "budget": row.amount("budget"),
            "score": row.integer("score", minimum=0, maximum=100) or 0,
            "created_at": row.datetime("created_at"),
        }
        for name, max_length in (
            ("phone", 50), ("company", 200), ("job_title", 100), ("source", 100), ("authority", 200),
            ("need", MAX_LINE_CHARS), ("timeline", 200), ("disqualified_reason", 200),
        ):  # fmt: skip
            values[name] = row.text(name, max_length=max_length)
        status = self._status(row, current)
        deal = self._deal(row, current, status)
        given = {name: row.datetime(name) for name in STAMPS}
        if row.problems:
            return values
        stamps = {name: given[name] or (current[name] if current else None) for name in STAMPS}
        if status == LeadStatus.CONVERTED and stamps["converted_at"] is None and deal is not None:
            stamps["converted_at"] = deal["created_at"]
        known = [at for at in stamps.values() if at is not None]
        # Like a deal, a new lead without created_at was created at the earliest time the row gives, else now.
        created_at = values["created_at"] or (current["created_at"] if current else min(known, default=self.now))
        for name, at in stamps.items():
            if at is not None and at < created_at:
                row.fail(name if given[name] else "created_at", f"{name} is before created_at.")
        _fill_path(stamps, status, created_at)
        if status == LeadStatus.DISQUALIFIED and stamps["disqualified_at"] is None:
            stamps["disqualified_at"] = max([created_at, *known])
        values.update(stamps, status=status, deal=deal["id"] if deal else None, created_at=created_at)
        return values

    def _status(self, row: Row, current: dict | None) -> str:
        value = row.mapped("status")
        if not value:
            return current["status"] if current else LeadStatus.NEW
        status = _STATUS_NAMES.get(" ".join(value.lower().split()))
        if status is None:
            row.fail("status", f"One of {', '.join(LeadStatus.values)}.")
            return LeadStatus.NEW
        if current and current["status"] == LeadStatus.CONVERTED and status != LeadStatus.CONVERTED:
            row.fail("status", "This lead was converted into a deal; its status can no longer change.")
        return status

    def _deal(self, row: Row, current: dict | None, status: str) -> dict | None:
        external_id = row.mapped("deal")
        if not external_id:
            if current and current["deal_id"] and not row.has("deal"):
                return {"id": current["deal_id"], "created_at": current["converted_at"]}
            if status == LeadStatus.CONVERTED:
                row.fail("deal", "A converted lead names the deal it became (its external id).")
            return None
        deal = self.deals.get(external_id)
        if deal is None:
            row.fail("deal", f"No deal you may change has the external id “{external_id}” (import the deals first?).")
            return None
        other_lead = deal["lead__id"]
        if other_lead is not None and (current is None or other_lead != current["id"]):
            row.fail("deal", "Another lead was already converted into this deal.")
        earlier = self.deal_rows.setdefault(deal["id"], row.number)
        if earlier != row.number:
            row.fail("deal", f"Row {earlier} was converted into the same deal.")
        return deal


def _fill_path(stamps: dict[str, datetime | None], status: str, created_at: datetime) -> None:
    """Stamp the statuses a lead at `status` has passed through but the file leaves empty (see the module doc)."""
    if status not in LEAD_STATUS_PATH:
        return
    needed = PATH_STAMPS[: LEAD_STATUS_PATH.index(status)]
    for index, name in enumerate(needed):
        if stamps[name] is not None:
            continue
        later = [stamps[n] for n in PATH_STAMPS[index + 1 :] if stamps[n] is not None]
        earlier = [stamps[n] for n in PATH_STAMPS[:index] if stamps[n] is not None]
        stamps[name] = min(later) if later else (max(earlier) if earlier else created_at)
