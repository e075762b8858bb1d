"""Turning the names in a file into records: owners, pipelines and stages, organizations, contacts, lost reasons.

Every lookup is case-insensitive and applies the import's value mapping first (`Engaging` → `Qualification`).
Reference data (users, stages, lost reasons) is loaded once; organizations and contacts, which can be many, are
looked up a chunk of rows at a time. With `create_missing`, an unknown organization, contact, owner or lost
reason becomes a `New` record, written (and given its pk) only when the import is written.
"""

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.contrib.auth.hashers import make_password
from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Concat, Lower, Trim

from accounts.models import Role, User
from pipeline.exporting import exported_deal_id
from pipeline.importing.values import CellError
from pipeline.models import Contact, Deal, LostReason, Organization, Pipeline, Stage, StageKind

if TYPE_CHECKING:  # base imports this module
    from pipeline.importing.base import Row

# The lost reason given to a lost deal whose file names none (created on first use).
UNSPECIFIED_LOST_REASON = "Unspecified"


@dataclass(eq=False)
class New:
    """A record the import will create; `pk` is set once it is written."""

    label: str
    fields: dict[str, Any] = field(default_factory=dict)
    pk: int | None = None


Ref = int | New


def pk_of(ref: Ref | None) -> int | None:
    if isinstance(ref, New):
        assert ref.pk is not None, f"{ref.label} has not been written yet"
        return ref.pk
    return ref


def deals_by_reference(queryset: QuerySet[Deal], references: Iterable[str], *fields: str) -> dict[str, dict]:
    """The deals of `queryset` that `references` name, as {reference: the deal's `values(*fields)`}.

    A reference is a deal's external id or, for a deal that has none, the `crm-deal-<id>` the export writes for it,
    so that an exported file imports back onto the same deals. An external id wins when both could match.
    """
    references = set(references)
    found = {deal["external_id"]: deal for deal in queryset.filter(external_id__in=references).values(*fields)}
    by_id = {exported_deal_id(reference): reference for reference in references - found.keys()}
    by_id.pop(None, None)
    if by_id:
        for deal in queryset.filter(pk__in=by_id, external_id__isnull=True).values(*fields):
            found[by_id[deal["id"]]] = deal
    return found


def referenced_deal(row: "Row", deals: dict[str, dict]) -> dict | None:
    """The deal a history row (stage changes, field changes) names by external id in its `deal` cell, among `deals`
    (those the importer may change, by `deals_by_reference`); None with the row failed at that cell."""
    external_id = row.raw("deal").strip()
    deal = deals.get(external_id)
    if not external_id:
        row.fail("deal", "The deal's external id is required.")
    elif deal is None:
        row.fail("deal", f"No deal you may change has the external id “{external_id}” (import the deals first?).")
    return deal


def _key(value: str) -> str:
    return " ".join(value.split()).lower()


class ValueMap:
    """The caller's value mapping, per field: a file's value (any case) → the value to look up instead."""

    def __init__(self, value_map: dict[str, dict[str, str]]):
        self._maps = {name: {_key(k): v for k, v in values.items()} for name, values in value_map.items()}

    def __call__(self, field_name: str, value: str) -> str:
        return self._maps.get(field_name, {}).get(_key(value), value).strip()


def split_name(name: str) -> tuple[str, str]:
    """`Ada Lovelace` → ("Ada", "Lovelace"); a single word is a last name."""
    first, _, last = " ".join(name.split()).rpartition(" ")
    return first, last


class Owners:
    """Users by username, email or full name; unknown ones become inactive users with `create_missing`."""

    def __init__(self, *, create_missing: bool, allowed: set[int] | None = None):
        self.create_missing = create_missing
        self.allowed = allowed  # who may own records the actor writes (None: anyone); only then are users created
        self.index: dict[str, set[int]] = defaultdict(set)
        self.new: dict[str, New] = {}
        self.usernames: set[str] = set()
        for user in User.objects.values("pk", "username", "email", "first_name", "last_name"):
            self.usernames.add(user["username"].lower())
            for name in (user["username"], user["email"], f"{user['first_name']} {user['last_name']}"):
                if name.strip():
                    self.index[_key(name)].add(user["pk"])

    def resolve(self, value: str) -> Ref:
        key = _key(value)
        pks = self.index.get(key, set())
        if len(pks) == 1:
            return next(iter(pks))
        if len(pks) > 1:
            raise CellError(f"More than one user is called “{value}”: use their username or email.")
        if not self.create_missing or self.allowed is not None:
            raise CellError(f"No user has the username, email or name “{value}”.")
        if key not in self.new:
            self.new[key] = New(value.strip(), self._new_user_fields(value.strip()))
        return self.new[key]

    def resolve_owner(self, value: str) -> Ref:
        """Like `resolve`, for an owner: someone whose records the actor may change."""
        owner = self.resolve(value)
        if self.allowed is not None and owner not in self.allowed:
            raise CellError(f"You may not give records to “{value}”.")
        return owner

    def _new_user_fields(self, value: str) -> dict[str, Any]:
        email = value if "@" in value else ""
        first, last = ("", "") if email else split_name(value)
        base = re.sub(r"[^\w.@+-]+", ".", (email or value).lower()).strip(".")[:140] or "imported"
        username, suffix = base, 1
        while username in self.usernames:
            suffix += 1
            username = f"{base}.{suffix}"
        self.usernames.add(username)
        return {"username": username, "email": email, "first_name": first[:150], "last_name": last[:150]}

    def write(self) -> int:
        """Create the missing owners as inactive reps without a usable password (an admin activates them)."""
        if not self.new:
            return 0
        unusable = make_password(None)
        users = User.objects.bulk_create(
            User(**ref.fields, role=Role.REP, is_active=False, password=unusable) for ref in self.new.values()
        )
        for ref, user in zip(self.new.values(), users, strict=True):
            ref.pk = user.pk
        return len(users)


@dataclass(frozen=True)
class StageRow:
    pk: int
    pipeline_id: int
    name: str
    order: int
    kind: str
    forecast_category: str

    @property
    def is_open(self) -> bool:
        return self.kind == StageKind.OPEN


class Stages:
    """Pipelines by name and their stages by name, loaded once."""

    def __init__(self) -> None:
        self.pipelines = {_key(p.name): p for p in Pipeline.objects.all()}
        self.pipeline_by_pk = {p.pk: p for p in self.pipelines.values()}
        self.default = next((p for p in self.pipelines.values() if p.is_default), None) or min(
            self.pipelines.values(), key=lambda p: p.pk, default=None
        )
        self.by_pk: dict[int, StageRow] = {}
        self.by_name: dict[tuple[int, str], StageRow] = {}
        self.first_open: dict[int, StageRow] = {}
        for stage in Stage.objects.order_by("pipeline_id", "order"):
            row = StageRow(stage.pk, stage.pipeline_id, stage.name, stage.order, stage.kind, stage.forecast_category)
            self.by_pk[row.pk] = row
            self.by_name[(row.pipeline_id, _key(row.name))] = row
            if row.is_open:
                self.first_open.setdefault(row.pipeline_id, row)

    def pipeline(self, value: str) -> Pipeline:
        pipeline = self.pipelines.get(_key(value))
        if pipeline is None:
            names = ", ".join(sorted(p.name for p in self.pipelines.values()))
            raise CellError(f"There is no pipeline “{value}” (pipelines: {names}).")
        return pipeline

    def stage(self, value: str, pipeline: Pipeline) -> StageRow:
        stage = self.by_name.get((pipeline.pk, _key(value)))
        if stage is None:
            names = ", ".join(s.name for s in self.by_pk.values() if s.pipeline_id == pipeline.pk)
            raise CellError(f"The pipeline “{pipeline.name}” has no stage “{value}” (its stages: {names}).")
        return stage


class LostReasons:
    def __init__(self, *, create_missing: bool):
        self.create_missing = create_missing
        self.index = {_key(name): pk for pk, name in LostReason.objects.values_list("pk", "name")}
        self.new: dict[str, New] = {}

    def resolve(self, value: str) -> Ref:
        key = _key(value)
        if key in self.index:
            return self.index[key]
        if not self.create_missing and key != _key(UNSPECIFIED_LOST_REASON):
            raise CellError(f"There is no lost reason “{value}”.")
        return self.new.setdefault(key, New(value.strip()))

    def unspecified(self) -> Ref:
        return self.resolve(UNSPECIFIED_LOST_REASON)

    def write(self) -> int:
        for ref in self.new.values():
            ref.pk = LostReason.objects.create(name=ref.label[:100]).pk
        return len(self.new)


class _Customers:
    """Organizations or contacts by external id, then by other keys (name, email); looked up a chunk at a time."""

    model: type[Organization] | type[Contact]
    noun: str

    def __init__(self, *, create_missing: bool, queryset: QuerySet):
        self.create_missing = create_missing
        self.queryset = queryset  # the records the actor may see; others are as good as unknown
        self.by_external_id: dict[str, int] = {}
        self.by_key: dict[str, set[int]] = defaultdict(set)
        self.looked_up: set[str] = set()
        self.new: dict[str, New] = {}

    def prefetch(self, values: Iterable[str]) -> None:
        wanted = {value.strip() for value in values if value.strip()} - self.looked_up
        if not wanted:
            return
        self.looked_up |= wanted
        keys = {_key(value) for value in wanted}
        for row in self._query(wanted, keys):
            if row["external_id"] in wanted:
                self.by_external_id[row["external_id"]] = row["pk"]
            for key in self._keys(row):
                if key in keys:
                    self.by_key[key].add(row["pk"])

    def resolve(self, value: str, **new_fields: Any) -> Ref:
        value = value.strip()
        if value in self.by_external_id:
            return self.by_external_id[value]
        pks = self.by_key.get(_key(value), set())
        if len(pks) == 1:
            return next(iter(pks))
        if len(pks) > 1:
            raise CellError(f"More than one {self.noun} matches “{value}”: use its external id.")
        if not self.create_missing:
            raise CellError(f"There is no {self.noun} “{value}” (create missing ones to add it).")
        return self.new.setdefault(_key(value), New(value, new_fields))


class Organizations(_Customers):
    model = Organization
    noun = "organization"

    def _query(self, wanted: set[str], keys: set[str]):
        return (
            self.queryset.annotate(key=Lower("name"))
            .filter(Q(external_id__in=wanted) | Q(key__in=keys))
            .values("pk", "external_id", "name")
        )

    def _keys(self, row: dict) -> list[str]:
        return [_key(row["name"])]

    def write(self) -> int:
        organizations = Organization.objects.bulk_create(
            Organization(name=ref.label[:200], owner_id=pk_of(ref.fields.get("owner"))) for ref in self.new.values()
        )
        for ref, organization in zip(self.new.values(), organizations, strict=True):
            ref.pk = organization.pk
        return len(organizations)


class Contacts(_Customers):
    model = Contact
    noun = "contact"

    def _query(self, wanted: set[str], keys: set[str]):
        return (
            self.queryset.annotate(
                email_key=Lower("email"), name_key=Lower(Trim(Concat("first_name", Value(" "), "last_name")))
            )
            .filter(Q(external_id__in=wanted) | Q(email_key__in=keys) | Q(name_key__in=keys))
            .values("pk", "external_id", "email", "first_name", "last_name")
        )

    def _keys(self, row: dict) -> list[str]:
        keys = [_key(f"{row['first_name']} {row['last_name']}")]
        if row["email"]:
            keys.append(_key(row["email"]))
        return keys

    def write(self) -> int:
        contacts = []
        for ref in self.new.values():
            email = ref.label if "@" in ref.label else ""
            first, last = ("", ref.label) if email else split_name(ref.label)
            contacts.append(
                Contact(
                    first_name=first[:100],
                    last_name=last[:100],
                    email=email,
                    organization_id=pk_of(ref.fields.get("organization")),
                    owner_id=pk_of(ref.fields.get("owner")),
                )
            )
        Contact.objects.bulk_create(contacts)
        for ref, contact in zip(self.new.values(), contacts, strict=True):
            ref.pk = contact.pk
        return len(contacts)
