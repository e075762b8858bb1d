"""CSV export of deals, stage changes, leads, organizations, contacts and activities, as a stream of lines.

`export_csv(kind=..., user=...)` yields the file line by line (header first), reading the rows a user may see
through the `visible_*` selectors in chunks, so it fits a `StreamingHttpResponse` and `manage.py export_csv` alike.
Columns carry the names the import reads, so an export imports back as the same data: deals, then their
`stage_changes` (the complete history, moves back included), into an empty database.

References are written as the import resolves them: a user by username; an organization or contact by its
external id, else by name (contacts: email, else full name). A deal without an external id is written as
`crm-deal-<id>`, so that its stage changes and activities can name it.

A text cell a spreadsheet would run as a formula is written with a leading apostrophe (`neutralise_formula`), and
the import takes it off again (`restore_formula`), so a file exported here still imports back as the same data.
"""

import csv
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet

from accounts.models import User
from pipeline.models import Activity, Contact, Deal, Lead, Organization, StageChange
from pipeline.selectors import (
    visible_activities,
    visible_contacts,
    visible_deals,
    visible_leads,
    visible_organizations,
)

CHUNK = 2000


# How the export names a deal without an external id; the import reads it back as that deal (`exported_deal_id`).
EXPORTED_DEAL_PREFIX = "crm-deal-"


def deal_reference(external_id: str | None, pk: int | None) -> str:
    if pk is None:
        return ""
    return external_id or f"{EXPORTED_DEAL_PREFIX}{pk}"


def exported_deal_id(reference: str) -> int | None:
    """The id in a `crm-deal-<id>` reference the export wrote, or None for any other text."""
    number = reference.removeprefix(EXPORTED_DEAL_PREFIX)
    return int(number) if number != reference and number.isascii() and number.isdigit() else None


# What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection"). A leading apostrophe makes it show the
# cell as text. Numbers, dates and amounts are never prefixed, and neither is a text that is a plain negative number
# (`-12.00`, a refused amount in an import report): a spreadsheet reads it as that number, runs nothing.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NEGATIVE_NUMBER = re.compile(r"-\d+(?:\.\d+)?")


def _looks_like_formula(text: str) -> bool:
    # Apostrophes first count too: `'=x` is written `''=x`, so that taking one apostrophe off gives `'=x` back.
    text = text.lstrip("'")
    return text.startswith(FORMULA_STARTS) and not _NEGATIVE_NUMBER.fullmatch(text)


def neutralise_formula(text: str) -> str:
    """`text` as a CSV cell a spreadsheet will not run: with `'` before it when it starts with `=`, `+`, `-`, `@`,
    tab or CR (after any apostrophes) and is not a plain negative number. `restore_formula` gives back `text`."""
    return f"'{text}" if _looks_like_formula(text) else text


def restore_formula(text: str) -> str:
    """The text a cell written by `neutralise_formula` stands for: one leading `'` taken off a formula-like text."""
    return text[1:] if text.startswith("'") and _looks_like_formula(text) else text


def _customer_reference(external_id: str | None, name: str | None) -> str:
    return external_id or (name or "").strip()


def csv_cell(value: Any) -> str:
    """`value` as a cell of an exported file: ISO dates and times, plain decimals, formulas neutralised."""
    if isinstance(value, str):
        return neutralise_formula(value)
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


class _Line:
    """A file-like object whose write returns what it was given, so that csv.writer yields lines."""

    def write(self, value: str) -> str:
        return value


# kind → (selector for a user, columns, {column: lookup or function of the values row})
Column = str | Callable[[dict], Any]

EXPORTS: dict[str, tuple[Callable[[User], QuerySet], dict[str, Column]]] = {
    "deals": (
        visible_deals,
        {
            "external_id": lambda r: deal_reference(r["external_id"], r["id"]),
            "title": "title",
            "pipeline": "pipeline__name",
            "stage": "stage__name",
            "owner": "owner__username",
            "organization": lambda r: _customer_reference(r["organization__external_id"], r["organization__name"]),
            "contact": lambda r: _contact_reference(r, "contact__"),
            "amount": "amount",
            "currency": "currency",
            "expected_close_date": "expected_close_date",
            "created_at": "created_at",
            "closed_at": "closed_at",
            "lost_reason": "lost_reason__name",
            "lost_note": "lost_note",
            "source": "source",
            "forecast_category_override": "forecast_category_override",
            "budget": "budget",
            "authority": "authority",
            "need": "need",
            "timeline": "timeline",
        },
    ),
    "stage_changes": (
        lambda user: StageChange.objects.filter(deal__in=visible_deals(user).values("pk")),
        {
            "deal": lambda r: deal_reference(r["deal__external_id"], r["deal_id"]),
            "stage": "to_stage__name",
            "changed_at": "changed_at",
            "changed_by": "changed_by__username",
        },
    ),
    "organizations": (
        visible_organizations,
        {
            "external_id": "external_id",
            "name": "name",
            "website": "website",
            "industry": "industry",
            "owner": "owner__username",
            "created_at": "created_at",
        },
    ),
    "contacts": (
        visible_contacts,
        {
            "external_id": "external_id",
            "first_name": "first_name",
            "last_name": "last_name",
            "email": "email",
            "phone": "phone",
            "job_title": "job_title",
            "organization": lambda r: _customer_reference(r["organization__external_id"], r["organization__name"]),
            "owner": "owner__username",
            "created_at": "created_at",
        },
    ),
    "leads": (
        visible_leads,
        {
            "external_id": "external_id",
            "first_name": "first_name",
            "last_name": "last_name",
            "email": "email",
            "phone": "phone",
            "company": "company",
            "job_title": "job_title",
            "source": "source",
            "status": "status",
            "score": "score",
            "owner": "owner__username",
            "organization": lambda r: _customer_reference(r["organization__external_id"], r["organization__name"]),
            "contact": lambda r: _contact_reference(r, "contact__"),
            "deal": lambda r: deal_reference(r["deal__external_id"], r["deal_id"]),
            "budget": "budget",
            "authority": "authority",
            "need": "need",
            "timeline": "timeline",
            "disqualified_reason": "disqualified_reason",
            "created_at": "created_at",
            "contacted_at": "contacted_at",
            "mql_at": "mql_at",
            "sql_at": "sql_at",
            "converted_at": "converted_at",
            "disqualified_at": "disqualified_at",
        },
    ),
    "activities": (
        visible_activities,
        {
            "kind": "kind",
            "subject": "subject",
            "note": "note",
            "deal": lambda r: deal_reference(r["deal__external_id"], r["deal_id"]),
            "lead": "lead__external_id",
            "owner": "owner__username",
            "due_at": "due_at",
            "done_at": "done_at",
            "created_at": "created_at",
        },
    ),
}

# Lookups the functions above read, besides the columns' own.
_EXTRA_LOOKUPS = {
    "deals": [
        "external_id",
        "id",
        "organization__external_id",
        "organization__name",
        *(f"contact__{n}" for n in ("external_id", "email", "first_name", "last_name")),
    ],
    "stage_changes": ["deal_id", "deal__external_id"],
    "contacts": ["organization__external_id", "organization__name"],
    "leads": [
        "deal_id",
        "deal__external_id",
        "organization__external_id",
        "organization__name",
        *(f"contact__{n}" for n in ("external_id", "email", "first_name", "last_name")),
    ],
    "activities": ["deal_id", "deal__external_id"],
}
_ORDER = {"stage_changes": ("deal_id", "changed_at", "id")}


def _contact_reference(row: dict, prefix: str) -> str:
    if row[f"{prefix}external_id"]:
        return row[f"{prefix}external_id"]
    if row[f"{prefix}email"]:
        return row[f"{prefix}email"]
    return f"{row[f'{prefix}first_name'] or ''} {row[f'{prefix}last_name'] or ''}".strip()


def export_kinds() -> list[str]:
    return list(EXPORTS)


def export_csv(
    *,
    kind: str,
    user: User | None,
    narrow: Callable[[QuerySet], QuerySet] | None = None,
    columns: dict[str, Column] | None = None,
    lookups: Iterable[str] = (),
    ordering: Sequence[str] | None = None,
) -> Iterator[str]:
    """The CSV lines of the `kind` records `user` may see (all records when `user` is None: for operators).

    `narrow` filters the visible rows further (e.g. with the API's list filters): it is given the selector's
    queryset, so it narrows what the user may see and cannot widen it. `columns` (with the `lookups` their
    functions read) replaces the kind's import columns, and `ordering` its order: the deal table exports what it
    shows, in its order.
    """
    if kind not in EXPORTS:
        raise ValueError(f"Unknown export kind {kind!r}; one of {', '.join(EXPORTS)}.")
    selector, kind_columns = EXPORTS[kind]
    queryset = selector(user) if user is not None else _model_of(kind).objects.all()
    if narrow is not None:
        queryset = narrow(queryset)  # here, not in the generator: a refused filter is raised before streaming starts
    if columns is None:
        columns, lookups = kind_columns, _EXTRA_LOOKUPS.get(kind, [])
    return _lines(queryset, columns, lookups, ordering or _ORDER.get(kind, ("id",)))


def _lines(
    queryset: QuerySet, columns: dict[str, Column], extra: Iterable[str], ordering: Sequence[str]
) -> Iterator[str]:
    lookups = sorted({c for c in columns.values() if isinstance(c, str)} | set(extra))
    rows = queryset.order_by(*ordering).values(*lookups).iterator(chunk_size=CHUNK)
    writer = csv.writer(_Line())
    yield writer.writerow(list(columns))
    for row in rows:
        yield writer.writerow([csv_cell(c(row) if callable(c) else row[c]) for c in columns.values()])


def _model_of(kind: str):
    return {
        "deals": Deal,
        "stage_changes": StageChange,
        "organizations": Organization,
        "contacts": Contact,
        "leads": Lead,
        "activities": Activity,
    }[kind]
