"""Importing organizations and contacts (and, through `UpsertImporter`, leads): a row with a known `external_id`
updates that record, other rows create one.

An empty owner cell makes a new record the importing user's, as the services do; an operator's import (no user)
leaves it without owner (visible through the deals and leads that link to it, and to admins), so that an export
imports back unchanged.
"""

import itertools

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.db.models import QuerySet

from accounts.models import AuditAction
from pipeline.importing import audit
from pipeline.importing.base import KindImporter, Problem, Row
from pipeline.importing.references import New, Organizations, pk_of, split_name
from pipeline.importing.writing import copy_rows, reserve_ids, update_rows
from pipeline.models import Contact, Organization
from pipeline.selectors import visible_contacts, visible_organizations


class UpsertImporter(KindImporter):
    """A record per row: a known `external_id` updates the columns the file maps, other rows create a record.

    `read` turns a row into field values; on an update, only the mapped fields and those in `always_set` (which
    `read` derives, such as a contact's names from a full-name column) change.
    """

    model: type[models.Model]
    updatable: tuple[str, ...]
    always_set: tuple[str, ...] = ()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.new_records: list[dict] = []
        self.changed_records: list[tuple[int, dict, dict]] = []  # (id, values after, values before)

    def check(self, chunk: list[tuple[int, dict[str, str]]]) -> list[Problem]:
        self.prefetch(chunk)
        external_ids = [cells["external_id"].strip() for _, cells in chunk if cells.get("external_id", "").strip()]
        existing = {r["external_id"]: r for r in self.model.objects.filter(external_id__in=external_ids).values()}
        changeable = set(self.changeable().filter(external_id__in=external_ids).values_list("external_id", flat=True))
        problems: list[Problem] = []
        for number, cells in chunk:
            row = Row(number, cells, self)
            external_id = self.external_id(row)
            current = existing.get(external_id)
            if current is not None and external_id not in changeable:
                row.fail("external_id", "This external id belongs to a record you may not change.")
                problems += row.problems
                continue
            values = self.read(row, current)
            if row.problems:
                problems += row.problems
                continue
            if current is None:
                values["external_id"] = external_id
                values.setdefault("created_at", None)
                values["created_at"] = values["created_at"] or self.now
                self.new_records.append(values)
                self.created += 1
                continue
            # An empty created_at keeps the old one.
            changes = {
                name: value
                for name, value in values.items()
                if (row.has(name) or name in self.always_set) and not (name == "created_at" and value is None)
            }
            before = {name: current[self.model._meta.get_field(name).attname] for name in self.updatable}
            full = {name: changes.get(name, before[name]) for name in self.updatable}
            if full == before:
                self.unchanged += 1
            else:
                self.changed_records.append((current["id"], full, before))
                self.updated += 1
        return problems

    def prefetch(self, chunk) -> None:
        pass

    def read(self, row: Row, current: dict | None) -> dict:
        raise NotImplementedError

    def owner(self, row: Row, current: dict | None):
        """The owner cell's user; an empty cell keeps the owner, or makes a new record the actor's (as the services
        do; without an actor, an operator's import, it stays without owner, so an export imports back unchanged)."""
        owner = row.reference("owner", self.owners.resolve_owner)
        if owner is None and not row.mapped("owner"):
            owner = current["owner_id"] if current else (self.actor.pk if self.actor else None)
        return owner

    def changeable(self) -> QuerySet:
        """The records of `model` the actor may update."""
        raise NotImplementedError

    def write(self) -> None:
        self.owners.write()
        self.write_references()
        fields = [f for f in self.model._meta.concrete_fields if not f.primary_key]
        ids = reserve_ids(self.model, len(self.new_records))
        copy_rows(
            self.model,
            ["id", *(f.column for f in fields)],
            (
                (record_id, *(_db(values[f.name]) if f.name in values else _default(f, self.now) for f in fields))
                for record_id, values in zip(ids, self.new_records, strict=True)
            ),
        )
        update_rows(
            self.model,
            [self.model._meta.get_field(name).column for name in self.updatable],
            ((record_id, *(_db(full[name]) for name in self.updatable)) for record_id, full, _ in self.changed_records),
            extra_set="updated_at = now()",
        )
        audit.copy_entries(
            model=self.model,
            actor=self.actor,
            entries=itertools.chain(
                (
                    (record_id, AuditAction.CREATED, self.describe(values), audit.created_changes(values.items()))
                    for record_id, values in zip(ids, self.new_records, strict=True)
                ),
                (
                    (record_id, AuditAction.UPDATED, self.describe(full), audit.updated_changes(before, full))
                    for record_id, full, before in self.changed_records
                ),
            ),
        )

    def describe(self, values: dict) -> str:
        """The record as `str(record)` shows it, for the audit trail."""
        raise NotImplementedError

    def write_references(self) -> None:
        pass


def _db(value):
    return pk_of(value) if isinstance(value, New) else value


def _default(field, now):
    return now if field.name == "updated_at" else field.get_default()


class OrganizationImporter(UpsertImporter):
    model = Organization
    updatable = ("name", "website", "industry", "owner", "created_at")

    def describe(self, values: dict) -> str:
        return values["name"]

    def changeable(self) -> QuerySet:
        return self.scoped(Organization, visible_organizations)

    def read(self, row: Row, current: dict | None) -> dict:
        name = row.text("name", max_length=200)
        if not name and (current is None or row.has("name")):
            row.fail("name", "An organization needs a name.")
        website = row.text("website", max_length=200)
        if website:
            if "://" not in website:
                website = f"https://{website}"
            try:
                URLValidator()(website)
            except ValidationError:
                row.fail("website", f"“{row.raw('website').strip()}” is not a web address.")
        return {
            "name": name,
            "website": website,
            "industry": row.text("industry", max_length=100),
            "owner": self.owner(row, current),
            "created_at": row.datetime("created_at"),
        }


class ContactImporter(UpsertImporter):
    model = Contact
    updatable = ("first_name", "last_name", "email", "phone", "job_title", "organization", "owner", "created_at")
    always_set = ("first_name", "last_name")  # `read` gives them only when a name column is mapped

    def describe(self, values: dict) -> str:
        return f"{values['first_name']} {values['last_name']}".strip()

    def changeable(self) -> QuerySet:
        return self.scoped(Contact, visible_contacts)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.organizations = Organizations(
            create_missing=self.options.create_missing, queryset=self.scoped(Organization, visible_organizations)
        )

    def prefetch(self, chunk) -> None:
        self.organizations.prefetch(self.value_map("organization", cells.get("organization", "")) for _, cells in chunk)

    def new_references(self) -> dict[str, int]:
        counts = super().new_references()
        if self.organizations.new:
            counts["organizations"] = len(self.organizations.new)
        return counts

    def write_references(self) -> None:
        self.organizations.write()

    def read(self, row: Row, current: dict | None) -> dict:
        names = read_person_name(row, current, noun="contact")
        owner = self.owner(row, current)
        values = {
            "email": row.email("email"),
            "phone": row.text("phone", max_length=50),
            "job_title": row.text("job_title", max_length=100),
            "organization": row.reference("organization", self.organizations.resolve, owner=owner),
            "owner": owner,
            "created_at": row.datetime("created_at"),
        }
        values.update(names)
        return values


def read_person_name(row: Row, current: dict | None, *, noun: str) -> dict[str, str]:
    """First and last name from their columns, or split from a full `name` column; {} when neither is mapped."""
    if current is not None and not (row.has("first_name") or row.has("last_name") or row.has("name")):
        return {}
    first_name = row.text("first_name", max_length=100)
    last_name = row.text("last_name", max_length=100)
    if not last_name and row.has("name") and not row.has("last_name"):
        first_name, last_name = split_name(row.text("name", max_length=201))
        if len(first_name) > 100 or len(last_name) > 100:
            row.fail("name", "First and last name are at most 100 characters each.")
    if not last_name:
        row.fail("last_name" if row.has("last_name") else "name", f"A {noun} needs a last name.")
    return {"first_name": first_name, "last_name": last_name}
