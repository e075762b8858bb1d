"""The fields each import kind reads, their usual column headers, and the mapping suggested from a header row.

Column names that `pipeline.exporting` writes are the field names themselves, so an export maps onto itself.
"""

import re
from dataclasses import dataclass

from pipeline.models import ImportKind

ENTERED_AT_PREFIX = "entered_at:"


@dataclass(frozen=True)
class Field:
    name: str
    synonyms: tuple[str, ...] = ()


# Synonyms are written normalized (see `normalize_header`): lower case, words joined by "_".
FIELDS: dict[str, tuple[Field, ...]] = {
    ImportKind.DEALS: (
        Field("external_id", ("id", "deal_id", "opportunity_id", "opportunity", "record_id", "external_id")),
        Field("title", ("deal", "deal_name", "deal_title", "opportunity_name", "name")),
        Field("pipeline", ("pipeline_name",)),
        Field("stage", ("deal_stage", "stage_name", "sales_stage", "opportunity_stage")),
        Field("owner", ("sales_agent", "agent", "sales_rep", "rep", "salesperson", "deal_owner", "assigned_to")),
        Field("organization", ("organisation", "account", "account_name", "company", "customer", "client")),
        Field("contact", ("contact_name", "contact_person", "person")),
        Field("amount", ("value", "close_value", "deal_value", "deal_amount", "revenue")),
        Field("currency", ("currency_code",)),
        Field("expected_close_date", ("expected_close", "expected_close_on", "forecast_close_date")),
        Field("created_at", ("created", "created_date", "create_date", "created_on", "date_created", "engage_date")),
        Field("closed_at", ("close_date", "closed", "closed_date", "closed_on", "date_closed")),
        Field("lost_reason", ("loss_reason", "reason_lost", "lost_because")),
        Field("lost_note", ()),
        Field("source", ("lead_source", "deal_source", "channel")),
        Field("forecast_category_override", ("forecast_category", "forecast")),
        Field("budget", ()),
        Field("authority", ()),
        Field("need", ()),
        Field("timeline", ()),
    ),
    ImportKind.STAGE_CHANGES: (
        Field("deal", ("deal_id", "deal_external_id", "opportunity_id", "external_id")),
        Field("stage", ("to_stage", "deal_stage", "stage_name", "new_stage")),
        Field("changed_at", ("date", "timestamp", "moved_at", "entered_at", "change_date", "changed_on")),
        Field("changed_by", ("moved_by", "user", "changed_by_user")),
    ),
    # Salesforce's OpportunityFieldHistory export: OpportunityId, Field, OldValue, NewValue, CreatedDate, CreatedById.
    ImportKind.FIELD_CHANGES: (
        Field("deal", ("deal_id", "deal_external_id", "opportunity_id", "opportunityid", "external_id")),
        Field("field", ("field_name", "changed_field")),
        Field("old_value", ("old", "oldvalue", "from", "from_value", "previous_value")),
        Field("new_value", ("new", "newvalue", "to", "to_value", "value")),
        Field("changed_at", ("date", "timestamp", "createddate", "created_date", "change_date", "changed_on")),
        Field("changed_by", ("createdbyid", "created_by_id", "created_by", "user", "changed_by_user")),
    ),
    ImportKind.LEADS: (
        Field("external_id", ("id", "lead_id")),
        Field("first_name", ("firstname", "given_name", "forename")),
        Field("last_name", ("lastname", "surname", "family_name")),
        Field("name", ("full_name", "lead_name", "contact_name")),
        Field("email", ("e_mail", "email_address", "mail")),
        Field("phone", ("telephone", "phone_number", "tel", "mobile")),
        Field("company", ("company_name", "account", "account_name", "organisation_name")),
        Field("job_title", ("title", "position", "role")),
        Field("source", ("lead_source", "channel")),
        Field("status", ("lead_status", "stage")),
        Field("score", ("lead_score", "rating")),
        Field("owner", ("lead_owner", "sales_agent", "assigned_to")),
        Field("organization", ("organisation",)),
        Field("contact", ()),
        Field("deal", ("deal_id", "converted_deal", "opportunity_id")),
        Field("budget", ()),
        Field("authority", ()),
        Field("need", ()),
        Field("timeline", ()),
        Field("disqualified_reason", ("disqualification_reason",)),
        Field("created_at", ("created", "created_date", "created_on")),
        Field("contacted_at", ()),
        Field("mql_at", ()),
        Field("sql_at", ()),
        Field("converted_at", ()),
        Field("disqualified_at", ()),
    ),
    ImportKind.ORGANIZATIONS: (
        Field("external_id", ("id", "organization_id", "account_id", "company_id")),
        Field("name", ("organization", "organisation", "organization_name", "account", "account_name", "company")),
        Field("website", ("url", "web", "homepage", "domain")),
        Field("industry", ("sector",)),
        Field("owner", ("account_owner", "sales_agent", "assigned_to")),
        Field("created_at", ("created", "created_date", "created_on")),
    ),
    ImportKind.CONTACTS: (
        Field("external_id", ("id", "contact_id", "person_id")),
        Field("first_name", ("firstname", "given_name", "forename")),
        Field("last_name", ("lastname", "surname", "family_name")),
        Field("name", ("full_name", "contact_name", "contact")),
        Field("email", ("e_mail", "email_address", "mail")),
        Field("phone", ("telephone", "phone_number", "tel", "mobile")),
        Field("job_title", ("title", "position", "role")),
        Field("organization", ("organisation", "account", "account_name", "company")),
        Field("owner", ("contact_owner", "assigned_to")),
        Field("created_at", ("created", "created_date", "created_on")),
    ),
}

# Columns a file of the kind cannot do without: one of each tuple. A deal's title may come from its organization,
# and a file that only updates records (by external id) needs no name.
REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    ImportKind.DEALS: (("title", "organization", "external_id"),),
    ImportKind.STAGE_CHANGES: (("deal",), ("stage",), ("changed_at",)),
    ImportKind.FIELD_CHANGES: (("deal",), ("field",), ("old_value",), ("new_value",), ("changed_at",)),
    ImportKind.LEADS: (("last_name", "name", "external_id"),),
    ImportKind.ORGANIZATIONS: (("name", "external_id"),),
    ImportKind.CONTACTS: (("last_name", "name", "external_id"),),
}


def supported_kinds() -> list[str]:
    return list(FIELDS)


def normalize_header(header: str) -> str:
    """`Deal Stage`, `deal-stage` and ` DEAL_STAGE ` all become `deal_stage`."""
    return re.sub(r"[^0-9a-z]+", "_", header.strip().lower()).strip("_")


def is_known_field(kind: str, field: str) -> bool:
    if kind == ImportKind.DEALS and field.startswith(ENTERED_AT_PREFIX):
        return bool(field[len(ENTERED_AT_PREFIX) :].strip())
    return any(spec.name == field for spec in FIELDS[kind])


def suggest_mapping(kind: str, header: list[str]) -> dict[str, str]:
    """CSV column → field, for the columns whose header names a field of `kind` or one of its usual synonyms.

    Each field is taken by at most one column (the first that matches). `entered_at:<stage name>` columns map
    onto themselves. Columns that match nothing are left out: the caller maps or ignores them.
    """
    by_name: dict[str, str] = {}
    for spec in FIELDS[kind]:
        by_name.setdefault(spec.name, spec.name)
    for spec in FIELDS[kind]:
        for synonym in spec.synonyms:
            by_name.setdefault(synonym, spec.name)
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for column in header:
        if kind == ImportKind.DEALS and column.strip().lower().startswith(ENTERED_AT_PREFIX):
            field = ENTERED_AT_PREFIX + column.strip()[len(ENTERED_AT_PREFIX) :].strip()
        else:
            field = by_name.get(normalize_header(column))
        if field and field not in taken:
            mapping[column] = field
            taken.add(field)
    return mapping
