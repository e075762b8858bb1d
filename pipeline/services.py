"""Every write to the pipeline. Views, API viewsets, admin actions, tasks and commands call these functions.

Each service validates its input (raising `django.core.exceptions.ValidationError` with per-field messages),
writes inside one transaction, and sends its domain signal (`pipeline.signals`) once the transaction commits.
Services do not check permissions: callers fetch the records through the `visible_*`/`editable_*` selectors.
"""

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import DatabaseError, DataError, IntegrityError, connection, models, transaction
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone

from accounts.models import AuditAction, User
from accounts.selectors import owners_editable_by
from accounts.services import audited_values, deferring_audit, record_audit
from config.exceptions import EXTERNAL_ID_TAKEN, StaleVersion
from config.services import apply_fields, set_fields
from pipeline import field_history, signals
from pipeline.models import (
    LEAD_STATUS_PATH,
    LOST_REASON_NAME_TAKEN,
    REQUIRABLE_DEAL_FIELDS,
    Activity,
    ActivityKind,
    Contact,
    Deal,
    Lead,
    LeadStatus,
    LostReason,
    Organization,
    Pipeline,
    SavedDealView,
    Stage,
    StageChange,
    StageKind,
)
from pipeline.selectors import default_pipeline, first_open_stage, visible_organizations
from pipeline.stage_history import BULK_LOAD_SETTING

logger = logging.getLogger(__name__)

# Fields a caller may set on a deal directly; stage, status and the timestamps change only through `move_deal`.
# A tuple, in the order the deal page shows them (pipeline/forms.py builds the deal's form from it).
DEAL_EDITABLE_FIELDS = (
    "title",
    "owner",
    "organization",
    "contact",
    "amount",
    "currency",
    "expected_close_date",
    "forecast_category_override",
    "source",
    "external_id",
    "budget",
    "authority",
    "need",
    "timeline",
    "lost_note",
)
# A tuple, in the order the API lists them (pipeline/api/serializers.py builds the lead's fields from it).
LEAD_EDITABLE_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "company",
    "job_title",
    "source",
    "score",
    "owner",
    "organization",
    "contact",
    "external_id",
    "budget",
    "authority",
    "need",
    "timeline",
)
ORGANIZATION_EDITABLE_FIELDS = frozenset({"name", "website", "industry", "owner", "external_id"})
CONTACT_EDITABLE_FIELDS = frozenset(
    {"first_name", "last_name", "email", "phone", "job_title", "organization", "owner", "external_id"}
)
ACTIVITY_EDITABLE_FIELDS = frozenset({"kind", "subject", "note", "due_at", "owner"})


# --- Shared mechanics ---------------------------------------------------------------------------------------------


def _send_on_commit(signal: Signal, **kwargs: Any) -> None:
    """Send `signal` after the current transaction commits; a failing receiver is logged, never raised.

    The write has already succeeded by then: a receiver that cannot reach Redis must not turn it into an error.
    """

    def send() -> None:
        for receiver, result in signal.send_robust(sender=None, **kwargs):
            if isinstance(result, Exception):
                logger.error("receiver %r of %s failed", receiver, signal, exc_info=result)

    transaction.on_commit(send)


def _validate(instance: models.Model, *, exclude: Iterable[str] = (), unique_external_id: bool = True) -> None:
    """Field validation (lengths, ranges, formats) and unique external ids, as per-field ValidationErrors.

    Foreign keys are excluded: callers pass model instances they already fetched, and a query per key would be
    wasted; the database's own constraints stay the last line of defence. Without `unique_external_id` the
    external id is not looked up (the caller knows it is unchanged, or checked it against a batch's prefetch).
    """
    foreign_keys = [field.name for field in instance._meta.concrete_fields if field.is_relation]
    instance.clean_fields(exclude=[*foreign_keys, *exclude])
    if unique_external_id and getattr(instance, "external_id", None):
        try:
            instance.validate_unique(
                exclude=[field.name for field in instance._meta.fields if field.name != "external_id"]
            )
        except ValidationError:
            # Unique across the company, so the holder may be a record the caller cannot see: one answer whoever
            # holds it, which names neither the record nor whether it is visible (README, "Decisions").
            raise ValidationError({"external_id": EXTERNAL_ID_TAKEN}) from None


def _check_version(instance: Deal, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != instance.version:
        raise StaleVersion(expected=expected_version, current=instance.version)


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def missing_required_fields(*, deal: Deal, stage: Stage) -> list[str]:
    """The fields `stage` requires that `deal` has not filled, in the stage's order."""
    return [name for name in stage.required_fields if _is_blank(getattr(deal, name))]


def _refuse_missing_fields(deal: Deal, stage: Stage, *, verb: str = "enter") -> None:
    missing = missing_required_fields(deal=deal, stage=stage)
    if missing:
        raise ValidationError(
            {
                name: f"{REQUIRABLE_DEAL_FIELDS[name]} is required to {verb} the stage “{stage.name}”."
                for name in missing
            }
        )


def _lost_reason_for(stage: Stage, lost_reason: LostReason | None) -> LostReason | None:
    if stage.kind != StageKind.LOST:
        return None
    if lost_reason is None:
        raise ValidationError({"lost_reason": "A lost reason is required to mark a deal as lost."})
    if not lost_reason.is_active:
        raise ValidationError({"lost_reason": f"The lost reason “{lost_reason.name}” is no longer in use."})
    return lost_reason


def _current_stage(stage: Stage | None, pipeline: Pipeline) -> Stage:
    """Re-read the target stage so that a stage deleted or moved since the caller fetched it is refused (in a
    `deal_batch`, as the batch read it when it began: the composite foreign key refuses one deleted since)."""
    batch = _deal_batch.get()
    if batch is not None:
        current = batch.stages.get(getattr(stage, "pk", None))
    else:
        current = Stage.objects.filter(pk=getattr(stage, "pk", None)).first()
    if current is None:
        raise ValidationError({"stage": "This stage does not exist (it may have been deleted)."})
    if current.pipeline_id != pipeline.pk:
        raise ValidationError(
            {"stage": f"The stage “{current.name}” belongs to another pipeline than “{pipeline.name}”."}
        )
    return current


def _actor_id(actor: User | None) -> int | None:
    return actor.pk if actor is not None else None


def _effective_forecast_category(deal: Deal, stage: Stage) -> str:
    return deal.forecast_category_override or stage.forecast_category


def _read_back_touch(deal: Deal) -> None:
    # The database stamped the last touch as it wrote (pipeline.touches), after the deal was read: the API's answer
    # and the webhook event, both built from this instance, show the write's own touch.
    deal.last_touched_at = Deal.objects.values_list("last_touched_at", flat=True).get(pk=deal.pk)


# --- Batches of deal writes ---------------------------------------------------------------------------------------


@dataclass
class _PendingWrite:
    """A deal write a batch holds until its end: a creation (`update_fields` None) or the columns of an update,
    with the rows and the signal that go with it."""

    deal: Deal
    update_fields: list[str] | None
    audit_entry: Any
    signal: Signal
    signal_kwargs: dict[str, Any]
    stage_change: StageChange | None = None
    refusal: DatabaseError | None = None  # what the database answered when it refused the write


@dataclass
class DealBatch:
    """What the deal writes of one batch share, read once when it begins, and the writes it holds to its end."""

    stages: dict[int, Stage]  # every stage, with its pipeline
    default_pipeline: Pipeline | None
    taken_external_ids: set[str]  # of the batch's items, held by some deal (the caller's or not)
    writes: list[_PendingWrite]
    audit_entries: list
    refusals: dict[int, DatabaseError]  # by `id()` of the deal: the error of a held write the database refused

    def first_open_stage(self, pipeline: Pipeline) -> Stage | None:
        open_stages = [s for s in self.stages.values() if s.pipeline_id == pipeline.pk and s.kind == StageKind.OPEN]
        return min(open_stages, key=lambda s: s.order, default=None)

    @contextmanager
    def item(self) -> Iterator[None]:
        """One item of the batch. It writes nothing to the database (its write is held), so it needs no savepoint;
        if it fails, what it held is dropped."""
        marks = (len(self.writes), len(self.audit_entries))
        try:
            yield
        except BaseException:
            del self.writes[marks[0] :]
            del self.audit_entries[marks[1] :]
            raise

    def refused(self, deal: Deal) -> DatabaseError | None:
        """The error with which the database refused the held write of `deal` at the end, or None: an
        IntegrityError (an external id or a related record taken or deleted by a concurrent writer meanwhile: a
        conflict) or a DataError (a value it cannot hold that validation let through: bad input)."""
        return self.refusals.get(id(deal))

    def _write_all(self) -> None:
        creates = [write for write in self.writes if write.update_fields is None]
        updates: dict[tuple[str, ...], list[_PendingWrite]] = {}
        for write in self.writes:
            if write.update_fields is not None:
                updates.setdefault(tuple(write.update_fields), []).append(write)
        # In one statement each, in a savepoint: a row the database refuses (a concurrent writer took an external id
        # or deleted an owner meanwhile) sends the group through one savepoint per write, to refuse only that one.
        _in_bulk(creates, lambda writes: Deal.objects.bulk_create([write.deal for write in writes]))
        for fields, group in updates.items():
            _in_bulk(group, lambda writes, fields=fields: _update_deals([write.deal for write in writes], fields))
        written = [write for write in self.writes if write.refusal is None]
        self.refusals = {id(write.deal): write.refusal for write in self.writes if write.refusal is not None}
        refused_entries = {id(write.audit_entry) for write in self.writes if write.refusal is not None}
        self.audit_entries[:] = [entry for entry in self.audit_entries if id(entry) not in refused_entries]
        for write in written:
            write.audit_entry.object_id = write.deal.pk
        _insert_first_stage_changes([write.stage_change for write in written if write.stage_change is not None])
        for write in written:
            _send_on_commit(write.signal, **write.signal_kwargs)


def _insert_first_stage_changes(stage_changes: list[StageChange]) -> None:
    """Insert the first stage changes of new deals in one statement, without the per-row stamping trigger.

    `pipeline.stage_history`'s trigger would stamp what is already known: a deal's only change has no next one
    (`left_at` null) and no previous one, and its furthest open stage is the one it was created in, which
    `create_deal` gave the deal as it was inserted. Row by row, each stamp was an UPDATE of its deal with the
    deal table's statement triggers: 400 ms of the 700 ms of SQL of 200 creates on L.
    """
    if not stage_changes:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting(%s, true), set_config(%s, 'on', true)", [BULK_LOAD_SETTING, BULK_LOAD_SETTING]
        )
        previous = cursor.fetchone()[0] or "off"
        StageChange.objects.bulk_create(stage_changes)
        cursor.execute("SELECT set_config(%s, %s, true)", [BULK_LOAD_SETTING, previous])


def _update_deals(deals: list[Deal], field_names: Iterable[str]) -> None:
    """Save `field_names` of `deals` in one UPDATE joining a VALUES list (the row triggers fire per row, as for
    single saves), reading back the last touch the triggers stamped (`_read_back_touch`). Django's `bulk_update`
    builds a CASE per column of 200 branches: 1.3 s under cProfile for 200."""
    fields = [Deal._meta.get_field(name) for name in field_names]
    quote = connection.ops.quote_name
    # Each value cast to its column's type: VALUES infers a type from the first row otherwise (NULL is text).
    row = "(%s::bigint, " + ", ".join(f"%s::{field.db_type(connection)}" for field in fields) + ")"
    params: list[Any] = []
    for deal in deals:
        params.append(deal.pk)
        params.extend(field.get_db_prep_save(getattr(deal, field.attname), connection) for field in fields)
    assignments = ", ".join(f"{quote(field.column)} = v.{quote(field.column)}" for field in fields)
    names = ", ".join(quote(field.column) for field in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(Deal._meta.db_table)} AS d SET {assignments} "
            f"FROM (VALUES {', '.join([row] * len(deals))}) AS v(id, {names}) WHERE d.id = v.id "
            "RETURNING d.id, d.last_touched_at",
            params,
        )
        touched = dict(cursor.fetchall())
    for deal in deals:
        deal.last_touched_at = touched.get(deal.pk, deal.last_touched_at)


def _in_bulk(writes: list[_PendingWrite], write_all: Callable[[list[_PendingWrite]], Any]) -> None:
    if not writes:
        return
    try:
        with transaction.atomic():
            write_all(writes)
    except (IntegrityError, DataError):
        for write in writes:
            try:
                with transaction.atomic():
                    write_all([write])
            except (IntegrityError, DataError) as error:
                write.refusal = error
                write.deal.pk = None if write.update_fields is None else write.deal.pk


_deal_batch: ContextVar[DealBatch | None] = ContextVar("deal_batch", default=None)


@contextmanager
def deal_batch(*, actor: User | None, external_ids: Iterable[str]) -> Iterator[DealBatch]:
    """Inside a transaction: the `create_deal` / `update_deal` calls of the block (a batch upsert's items, each
    within `DealBatch.item()`) follow the rules of single writes at a cost constant in their number: the pipelines
    and stages are read once, the `external_ids` the items name are looked up once, the field history's author is
    set once, and each call validates and holds its write; at the end the deals are inserted in one statement, the
    updates in one per set of changed columns, then the first stage changes and audit entries, and each write's
    signal is sent after commit as a single write's is. No other deal write may run inside the block.

    A deal the database refuses at the end (`DealBatch.refused`) writes nothing, and its signal is not sent.
    """
    stages = {stage.pk: stage for stage in Stage.objects.select_related("pipeline")}
    pipelines = {stage.pipeline_id: stage.pipeline for stage in stages.values()}
    default = next((p for p in pipelines.values() if p.is_default), None)
    batch = DealBatch(
        stages=stages,
        default_pipeline=default or default_pipeline(),
        taken_external_ids=set(
            Deal.objects.filter(external_id__in=set(external_ids)).values_list("external_id", flat=True)
        ),
        writes=[],
        audit_entries=[],
        refusals={},
    )
    token = _deal_batch.set(batch)
    try:
        with field_history.acting_as(_actor_id(actor)), deferring_audit() as audit_entries:
            batch.audit_entries = audit_entries
            yield batch
            _deal_batch.reset(token)
            token = None
            batch._write_all()
    finally:
        if token is not None:
            _deal_batch.reset(token)


def _atomic_unless_batched(write: Callable) -> Callable:
    """`transaction.atomic` around a deal write, but inside a `deal_batch`, whose writes write nothing until its
    end: their savepoints would cost two statements each for nothing."""

    @functools.wraps(write)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _deal_batch.get() is not None:
            return write(*args, **kwargs)
        with transaction.atomic():
            return write(*args, **kwargs)

    return wrapper


# --- Deals --------------------------------------------------------------------------------------------------------


@_atomic_unless_batched
def create_deal(
    *,
    actor: User | None,
    title: str,
    owner: User | None = None,
    pipeline: Pipeline | None = None,
    stage: Stage | None = None,
    lost_reason: LostReason | None = None,
    created_at: datetime | None = None,
    **fields: Any,
) -> Deal:
    """Create a deal in `stage` (default: the first open stage of `pipeline`, or of the default pipeline).

    Entering the first stage follows the rules of any stage: its required fields must be filled, and a deal
    created lost needs a lost reason. The first StageChange (from nothing) is recorded at `created_at`.
    """
    batch = _deal_batch.get()
    if batch is not None:
        pipeline = pipeline or (stage.pipeline if stage else batch.default_pipeline)
    else:
        pipeline = pipeline or (stage.pipeline if stage else default_pipeline())
    if pipeline is None:
        raise ValidationError({"pipeline": "There is no pipeline yet: an admin must create one first."})
    stage = stage or (batch.first_open_stage(pipeline) if batch is not None else first_open_stage(pipeline=pipeline))
    if stage is None:
        raise ValidationError({"stage": f"The pipeline “{pipeline.name}” has no open stage."})
    stage = _current_stage(stage, pipeline)
    owner = owner or actor
    if owner is None:
        raise ValidationError({"owner": "A deal needs an owner."})
    at = created_at or timezone.now()

    deal = Deal(title=title, pipeline=pipeline, stage=stage, owner=owner, created_at=at)
    set_fields(deal, fields, DEAL_EDITABLE_FIELDS)
    deal.status = stage.kind
    deal.lost_reason = _lost_reason_for(stage, lost_reason)
    deal.closed_at = None if stage.is_open else at
    deal.stage_entered_at = at
    deal.updated_at = timezone.now()
    deal.forecast_category = _effective_forecast_category(deal, stage)
    _refuse_missing_fields(deal, stage)
    _validate(deal, unique_external_id=batch is None)
    if batch is not None and deal.external_id in batch.taken_external_ids:
        raise ValidationError({"external_id": EXTERNAL_ID_TAKEN})
    if batch is not None:
        audit_entry = record_audit(actor=actor, instance=deal, action=AuditAction.CREATED)
        # What the stage history's trigger would stamp after the first stage change (`_insert_first_stage_changes`);
        # after the audit entry, which a single create records before the stamp.
        deal.furthest_open_order = stage.order if stage.kind == StageKind.OPEN else None
        if deal.external_id:
            batch.taken_external_ids.add(deal.external_id)
        batch.writes.append(
            _PendingWrite(
                deal=deal,
                update_fields=None,
                stage_change=StageChange(deal=deal, from_stage=None, to_stage=stage, changed_by=actor, changed_at=at),
                audit_entry=audit_entry,
                signal=signals.deal_created,
                signal_kwargs={"actor": actor, "deal": deal},
            )
        )
        return deal
    with field_history.acting_as(_actor_id(actor)):
        deal.save()
    StageChange.objects.create(deal=deal, from_stage=None, to_stage=stage, changed_by=actor, changed_at=at)
    record_audit(actor=actor, instance=deal, action=AuditAction.CREATED)
    _send_on_commit(signals.deal_created, actor=actor, deal=deal)
    return deal


@_atomic_unless_batched
def update_deal(*, deal: Deal, actor: User | None, expected_version: int | None = None, **fields: Any) -> Deal:
    """Change a deal's fields (not its stage: see `move_deal`); bumps the version when anything changed.

    A field the current stage requires cannot be emptied. `expected_version` guards against lost updates.
    """
    batch = _deal_batch.get()
    if batch is None:
        deal = Deal.objects.select_for_update().select_related("stage").get(pk=deal.pk)
    else:
        # A batch locked and read its deals in this transaction already (`BatchUpsertMixin`): read again, they
        # would be the same rows.
        deal.stage = batch.stages.get(deal.stage_id) or Stage.objects.get(pk=deal.stage_id)
    _check_version(deal, expected_version)
    before = audited_values(deal)

    def check_and_derive(changed: list[str]) -> None:
        _refuse_missing_fields(deal, deal.stage, verb="stay in")
        deal.forecast_category = _effective_forecast_category(deal, deal.stage)
        # An external id that did not change was unique, and the database keeps it so.
        _validate(deal, unique_external_id="external_id" in changed)
        deal.version += 1
        deal.updated_at = timezone.now()

    if batch is not None:
        saved: list[list[str]] = []
        changed = apply_fields(
            deal, fields, DEAL_EDITABLE_FIELDS, before_save=check_and_derive, save=lambda columns: saved.append(columns)
        )
        if changed:
            batch.writes.append(
                _PendingWrite(
                    deal=deal,
                    update_fields=saved[0],
                    audit_entry=record_audit(actor=actor, instance=deal, action=AuditAction.UPDATED, before=before),
                    signal=signals.deal_updated,
                    signal_kwargs={"actor": actor, "deal": deal, "changed_fields": changed},
                )
            )
        return deal
    with field_history.acting_as(_actor_id(actor)):
        changed = apply_fields(deal, fields, DEAL_EDITABLE_FIELDS, before_save=check_and_derive)
    if not changed:
        return deal
    _read_back_touch(deal)
    record_audit(actor=actor, instance=deal, action=AuditAction.UPDATED, before=before)
    _send_on_commit(signals.deal_updated, actor=actor, deal=deal, changed_fields=changed)
    return deal


@transaction.atomic
def move_deal(
    *,
    deal: Deal,
    stage: Stage,
    actor: User | None,
    lost_reason: LostReason | None = None,
    fields: dict[str, Any] | None = None,
    expected_version: int | None = None,
    at: datetime | None = None,
) -> Deal:
    """Move a deal to `stage` of its pipeline, forwards, backwards, to won or lost, or out of won/lost (reopen).

    `fields` fills in what the target stage requires in the same step; every required field still missing is
    refused by name. Losing needs an active `lost_reason`. The deal row is locked, its StageChange recorded at
    `at` (default now), `stage_entered_at`/`closed_at`/`status` kept in step, and its version bumped. Moving to
    the stage the deal is already in changes nothing, so a retried request is harmless.
    """
    deal = Deal.objects.select_for_update().select_related("stage", "pipeline").get(pk=deal.pk)
    _check_version(deal, expected_version)
    stage = _current_stage(stage, deal.pipeline)
    if stage.pk == deal.stage_id and not fields:
        return deal
    at = at or timezone.now()
    if at < deal.stage_entered_at:
        raise ValidationError({"at": "A move cannot be dated before the deal entered its current stage."})

    from_stage = deal.stage
    before = audited_values(deal)
    set_fields(deal, fields or {}, DEAL_EDITABLE_FIELDS)
    _refuse_missing_fields(deal, stage)
    deal.lost_reason = _lost_reason_for(stage, lost_reason)
    if stage.kind != StageKind.LOST:
        deal.lost_note = ""
    if stage.pk != from_stage.pk:
        deal.stage = stage
        deal.status = stage.kind
        deal.stage_entered_at = at
        # A deal moved from won straight to lost (or back) closes again at the new time.
        deal.closed_at = None if stage.is_open else at
    deal.forecast_category = _effective_forecast_category(deal, stage)
    _validate(deal)
    deal.version += 1
    deal.updated_at = timezone.now()
    with field_history.acting_as(_actor_id(actor)):
        deal.save()
    _read_back_touch(deal)
    moved = stage.pk != from_stage.pk
    record_audit(
        actor=actor, instance=deal, action=AuditAction.STAGE_CHANGED if moved else AuditAction.UPDATED, before=before
    )
    if not moved:
        _send_on_commit(signals.deal_updated, actor=actor, deal=deal, changed_fields=sorted(fields or {}))
        return deal
    stage_change = StageChange.objects.create(
        deal=deal, from_stage=from_stage, to_stage=stage, changed_by=actor, changed_at=at
    )
    _send_on_commit(signals.deal_stage_changed, actor=actor, deal=deal, stage_change=stage_change)
    return deal


@dataclass(frozen=True)
class BulkOutcome:
    """What a bulk change did to one deal: `changed`, or refused with the reason (`message`)."""

    deal: Deal
    changed: bool
    message: str = ""


def bulk_change_deals(
    *,
    deals: Iterable[Deal],
    actor: User | None,
    owner: User | None = None,
    stage: Stage | None = None,
    lost_reason: LostReason | None = None,
    expected_close_date: date | None = None,
) -> list[BulkOutcome]:
    """Give each of `deals` a new owner, stage or expected close date, one deal at a time: each change is its own
    transaction through `update_deal` or `move_deal`, so a deal refused (a stage's required field missing, a stage
    of another pipeline, no lost reason) is reported and leaves the others changed. Exactly one change is given.
    Callers pass deals they fetched through `editable_deals`."""
    changes = [owner is not None, stage is not None, expected_close_date is not None]
    if sum(changes) != 1:
        raise ValueError("bulk_change_deals takes exactly one of owner, stage and expected_close_date")
    outcomes = []
    for deal in deals:
        try:
            if stage is not None:
                move_deal(deal=deal, stage=stage, actor=actor, lost_reason=lost_reason)
            elif owner is not None:
                update_deal(deal=deal, actor=actor, owner=owner)
            else:
                update_deal(deal=deal, actor=actor, expected_close_date=expected_close_date)
        except ValidationError as error:
            outcomes.append(BulkOutcome(deal, False, " ".join(error.messages)))
        else:
            outcomes.append(BulkOutcome(deal, True))
    return outcomes


# --- Saved deal tables --------------------------------------------------------------------------------------------


@transaction.atomic
def save_deal_view(*, owner: User, name: str, query: str) -> SavedDealView:
    """Save the deal table `query` (its query string) under `name` for `owner`; a name they already used is
    replaced, so that saving again updates the view."""
    view = SavedDealView.objects.select_for_update().filter(owner=owner, name=name.strip()).first()
    view = view or SavedDealView(owner=owner, name=name.strip())
    if not view.name:
        raise ValidationError({"name": "Give the view a name."})
    view.query = query
    view.full_clean(exclude=["owner"], validate_unique=False, validate_constraints=False)
    view.save()
    return view


def delete_deal_view(*, view: SavedDealView) -> None:
    """Forget a saved deal table (callers fetch it through `saved_deal_views`)."""
    view.delete()


# --- Organizations and contacts -------------------------------------------------------------------------------------


@transaction.atomic
def create_organization(*, actor: User | None, name: str, **fields: Any) -> Organization:
    """Create a customer organization, owned by `actor` unless `owner` is given."""
    organization = Organization(name=name, owner=actor)
    set_fields(organization, fields, ORGANIZATION_EDITABLE_FIELDS)
    _validate(organization)
    organization.save()
    record_audit(actor=actor, instance=organization, action=AuditAction.CREATED)
    return organization


@transaction.atomic
def update_organization(*, organization: Organization, actor: User | None, **fields: Any) -> Organization:
    """Change an organization's fields."""
    organization = Organization.objects.select_for_update().get(pk=organization.pk)
    before = audited_values(organization)
    if apply_fields(organization, fields, ORGANIZATION_EDITABLE_FIELDS, before_save=lambda _: _validate(organization)):
        record_audit(actor=actor, instance=organization, action=AuditAction.UPDATED, before=before)
    return organization


@transaction.atomic
def create_contact(*, actor: User | None, last_name: str, **fields: Any) -> Contact:
    """Create a contact person, owned by `actor` unless `owner` is given."""
    contact = Contact(last_name=last_name, owner=actor)
    set_fields(contact, fields, CONTACT_EDITABLE_FIELDS)
    _validate(contact)
    contact.save()
    record_audit(actor=actor, instance=contact, action=AuditAction.CREATED)
    return contact


@transaction.atomic
def update_contact(*, contact: Contact, actor: User | None, **fields: Any) -> Contact:
    """Change a contact's fields."""
    contact = Contact.objects.select_for_update().get(pk=contact.pk)
    before = audited_values(contact)
    if apply_fields(contact, fields, CONTACT_EDITABLE_FIELDS, before_save=lambda _: _validate(contact)):
        record_audit(actor=actor, instance=contact, action=AuditAction.UPDATED, before=before)
    return contact


# --- Leads --------------------------------------------------------------------------------------------------------


def _stamp_lead_path(lead: Lead, status: str, at: datetime) -> None:
    """Stamp the first time each status up to `status` was reached; skipped statuses count as passed through."""
    for step in LEAD_STATUS_PATH[1 : LEAD_STATUS_PATH.index(status) + 1]:
        field = f"{step}_at"
        if getattr(lead, field) is None:
            setattr(lead, field, at)


@transaction.atomic
def create_lead(
    *,
    actor: User | None,
    last_name: str,
    owner: User | None = None,
    status: str = LeadStatus.NEW,
    created_at: datetime | None = None,
    **fields: Any,
) -> Lead:
    """Create a lead, owned by `actor` unless `owner` is given, in any status before `converted`."""
    owner = owner or actor
    if owner is None:
        raise ValidationError({"owner": "A lead needs an owner."})
    if status not in LeadStatus.values or status == LeadStatus.CONVERTED:
        raise ValidationError({"status": "A new lead is new, contacted, mql, sql or disqualified; convert it later."})
    at = created_at or timezone.now()
    lead = Lead(last_name=last_name, owner=owner, status=status, created_at=at)
    set_fields(lead, fields, LEAD_EDITABLE_FIELDS)
    if status == LeadStatus.DISQUALIFIED:
        lead.disqualified_at = at
    else:
        _stamp_lead_path(lead, status, at)
    _validate(lead)
    lead.save()
    record_audit(actor=actor, instance=lead, action=AuditAction.CREATED)
    _send_on_commit(signals.lead_created, actor=actor, lead=lead)
    return lead


@transaction.atomic
def update_lead(*, lead: Lead, actor: User | None, **fields: Any) -> Lead:
    """Change a lead's fields (its status changes through `advance_lead` and `convert_lead`)."""
    lead = Lead.objects.select_for_update().get(pk=lead.pk)
    before = audited_values(lead)
    if apply_fields(lead, fields, LEAD_EDITABLE_FIELDS, before_save=lambda _: _validate(lead)):
        record_audit(actor=actor, instance=lead, action=AuditAction.UPDATED, before=before)
    return lead


@transaction.atomic
def advance_lead(*, lead: Lead, actor: User | None, status: str, reason: str = "", at: datetime | None = None) -> Lead:
    """Set a lead's status: forwards (skipped steps stamped as passed), back, to disqualified, or requalified.

    `converted` is reached only through `convert_lead`, and a converted lead keeps its status.
    """
    lead = Lead.objects.select_for_update().get(pk=lead.pk)
    if status not in LeadStatus.values:
        raise ValidationError({"status": f"Unknown lead status “{status}”."})
    if status == LeadStatus.CONVERTED:
        raise ValidationError({"status": "Convert a lead with the convert action, which creates its deal."})
    if lead.status == LeadStatus.CONVERTED:
        raise ValidationError({"status": "This lead was converted into a deal; its status can no longer change."})
    if status == lead.status:
        return lead
    at = at or timezone.now()
    from_status = lead.status
    before = audited_values(lead)
    if status == LeadStatus.DISQUALIFIED:
        lead.disqualified_at = at
        lead.disqualified_reason = reason
    else:
        _stamp_lead_path(lead, status, at)
    lead.status = status
    lead.save()
    record_audit(actor=actor, instance=lead, action=AuditAction.STATUS_CHANGED, before=before)
    _send_on_commit(signals.lead_status_changed, actor=actor, lead=lead, from_status=from_status)
    return lead


@transaction.atomic
def convert_lead(
    *,
    lead: Lead,
    actor: User | None,
    title: str = "",
    pipeline: Pipeline | None = None,
    stage: Stage | None = None,
    organization: Organization | None = None,
    contact: Contact | None = None,
    at: datetime | None = None,
    **deal_fields: Any,
) -> Deal:
    """Turn a qualified lead into a deal, creating its organization and contact when missing, and link them.

    The lead's source and BANT answers carry over to the deal, and so do its activities (moved onto the deal,
    remembering the lead in `from_lead`); the lead is stamped as having passed through every
    status up to `converted`. A disqualified or already converted lead is refused. Without an organization, one
    named like the lead's company is reused if `actor` may see it, else a new one is created.
    """
    lead = Lead.objects.select_for_update().get(pk=lead.pk)
    if lead.status == LeadStatus.CONVERTED:
        raise ValidationError({"status": "This lead has already been converted."})
    if lead.status == LeadStatus.DISQUALIFIED:
        raise ValidationError({"status": "A disqualified lead cannot be converted; requalify it first."})
    at = at or timezone.now()

    organization = organization or lead.organization
    if organization is None and lead.company.strip():
        # Only among the organizations the converting user may see: linking another's by its name alone would show
        # them a customer record outside their visibility (through the new deal) and attach it to their deal.
        candidates = Organization.objects.all() if actor is None else visible_organizations(actor)
        organization = candidates.filter(name__iexact=lead.company.strip()).order_by("id").first()
        organization = organization or create_organization(actor=actor, name=lead.company.strip(), owner=lead.owner)
    contact = contact or lead.contact
    if contact is None:
        contact = create_contact(
            actor=actor,
            first_name=lead.first_name,
            last_name=lead.last_name,
            email=lead.email,
            phone=lead.phone,
            job_title=lead.job_title,
            organization=organization,
            owner=lead.owner,
        )
    for name in ("source", "budget", "authority", "need", "timeline"):
        deal_fields.setdefault(name, getattr(lead, name))
    deal = create_deal(
        actor=actor,
        title=title.strip() or (organization.name if organization else str(contact)),
        owner=lead.owner,
        pipeline=pipeline,
        stage=stage,
        organization=organization,
        contact=contact,
        created_at=at,
        **deal_fields,
    )
    from_status = lead.status
    before = audited_values(lead)
    _stamp_lead_path(lead, LeadStatus.CONVERTED, at)
    lead.status = LeadStatus.CONVERTED
    lead.deal = deal
    lead.organization = organization
    lead.contact = contact
    lead.save()
    # The lead's activities (done and planned) carry over: the deal's timeline and next step continue the lead's.
    lead.activities.update(deal=deal, lead=None, from_lead=lead, updated_at=at)
    record_audit(actor=actor, instance=lead, action=AuditAction.CONVERTED, before=before)
    _send_on_commit(signals.lead_status_changed, actor=actor, lead=lead, from_status=from_status)
    _send_on_commit(signals.lead_converted, actor=actor, lead=lead, deal=deal)
    return deal


# --- Activities ---------------------------------------------------------------------------------------------------


@transaction.atomic
def log_activity(
    *,
    actor: User | None,
    kind: str,
    subject: str,
    deal: Deal | None = None,
    lead: Lead | None = None,
    owner: User | None = None,
    note: str = "",
    due_at: datetime | None = None,
    done_at: datetime | None = None,
) -> Activity:
    """Log what happened (done now unless `due_at` plans it) or plan a next step, on a deal or on a lead."""
    if (deal is None) == (lead is None):
        raise ValidationError({"deal": "An activity belongs to exactly one deal or one lead."})
    if kind not in ActivityKind.values:
        raise ValidationError({"kind": f"Unknown activity type “{kind}”."})
    owner = owner or actor
    if owner is None:
        raise ValidationError({"owner": "An activity needs an owner."})
    if due_at is None and done_at is None:
        done_at = timezone.now()
    activity = Activity(
        kind=kind, subject=subject, note=note, deal=deal, lead=lead, owner=owner, due_at=due_at, done_at=done_at
    )
    _validate(activity)
    activity.save()
    _send_on_commit(signals.activity_logged, actor=actor, activity=activity)
    return activity


@transaction.atomic
def update_activity(*, activity: Activity, actor: User | None, **fields: Any) -> Activity:
    """Change a planned or logged activity's type, subject, note, due time or owner.

    Only someone who may change the records of the activity's current owner may give it to another: a rep may edit
    what a manager logged on the rep's deal, never make it theirs.
    """
    activity = Activity.objects.select_for_update().get(pk=activity.pk)
    new_owner = getattr(fields.get("owner"), "pk", fields.get("owner"))
    if "owner" in fields and new_owner != activity.owner_id and not _may_change_records_of(actor, activity.owner_id):
        raise ValidationError({"owner": "Only someone who may change its owner's records can hand this activity on."})

    def check(changed: list[str]) -> None:
        if activity.due_at is None and activity.done_at is None:
            raise ValidationError({"due_at": "A planned activity needs a due time."})
        _validate(activity)

    apply_fields(activity, fields, ACTIVITY_EDITABLE_FIELDS, before_save=check)
    return activity


def _may_change_records_of(actor: User | None, owner_id: int) -> bool:
    """Whether `actor` (None: the system) may change what `owner_id` owns, by the rule of SPEC §2."""
    if actor is None:
        return True
    owners = owners_editable_by(actor)
    return owners is None or owners.filter(pk=owner_id).exists()


@transaction.atomic
def complete_activity(*, activity: Activity, actor: User | None, at: datetime | None = None) -> Activity:
    """Mark a planned activity done (at `at`, default now); completing a done activity changes nothing."""
    activity = Activity.objects.select_for_update().get(pk=activity.pk)
    if activity.done_at is not None:
        return activity
    activity.done_at = at or timezone.now()
    activity.save(update_fields=["done_at", "updated_at"])
    _send_on_commit(signals.activity_completed, actor=actor, activity=activity)
    return activity


# --- Configuration: pipelines, stages, lost reasons (admins only; callers check the role) -----------------------------

PIPELINE_EDITABLE_FIELDS = frozenset({"name", "is_default"})
STAGE_EDITABLE_FIELDS = frozenset(
    {"name", "order", "probability", "rotting_days", "required_fields", "forecast_category"}
)
LOST_REASON_EDITABLE_FIELDS = frozenset({"name", "is_active"})
# The fields of a stage that some number reads (the others: its name and required fields, read by no metric).
STAGE_FIELDS_COUNTED = ("order", "probability", "rotting_days", "forecast_category")


def _make_sole_default(pipeline: Pipeline) -> None:
    """Unset the previous default pipeline, so that the one-default constraint holds when `pipeline` becomes it."""
    Pipeline.objects.filter(is_default=True).exclude(pk=pipeline.pk).update(is_default=False)


def _validate_stage(stage: Stage) -> None:
    # Won and lost stages carry fixed probabilities (the database checks them too, but with a less helpful message).
    if stage.kind == StageKind.WON and stage.probability != 100:
        raise ValidationError({"probability": "A won stage has probability 100."})
    if stage.kind == StageKind.LOST and stage.probability != 0:
        raise ValidationError({"probability": "A lost stage has probability 0."})
    stage.full_clean(exclude=["pipeline", "order"], validate_unique=False, validate_constraints=False)
    duplicate = Stage.objects.filter(pipeline_id=stage.pipeline_id, name=stage.name).exclude(pk=stage.pk)
    if duplicate.exists():
        raise ValidationError({"name": f"The pipeline already has a stage named “{stage.name}”."})


@transaction.atomic
def create_pipeline(
    *, actor: User | None, name: str, stages: list[dict[str, Any]], is_default: bool = False
) -> Pipeline:
    """Create a pipeline with its stages, ordered as given: open stages, and exactly one won and one lost stage.

    Each stage is a dict of Stage fields (`name`, `kind`, `probability`, `rotting_days`, `required_fields`,
    `forecast_category`). A problem with a stage is reported under `stages` with the stage's position and name.
    """
    kinds = [stage.get("kind", StageKind.OPEN) for stage in stages]
    if StageKind.OPEN not in kinds or kinds.count(StageKind.WON) != 1 or kinds.count(StageKind.LOST) != 1:
        raise ValidationError({"stages": "A pipeline needs at least one open stage, one won stage and one lost stage."})
    pipeline = Pipeline(name=name, is_default=is_default)
    # The one-default constraint is kept by `_make_sole_default`, not refused.
    pipeline.full_clean(exclude=["created_at"], validate_constraints=False)
    if is_default:
        _make_sole_default(pipeline)
    pipeline.save()
    for order, fields in enumerate(stages, start=1):
        stage = Stage(pipeline=pipeline, order=order, **fields)
        try:
            _validate_stage(stage)
        except ValidationError as error:
            raise ValidationError(
                {"stages": [f"Stage {order} ({fields.get('name', '')}): {message}" for message in error.messages]}
            ) from error
        stage.save()
        record_audit(actor=actor, instance=stage, action=AuditAction.CREATED)
    record_audit(actor=actor, instance=pipeline, action=AuditAction.CREATED)
    _send_on_commit(signals.configuration_changed, actor=actor, pipeline=pipeline, stages=list(pipeline.stages.all()))
    return pipeline


@transaction.atomic
def update_pipeline(*, pipeline: Pipeline, actor: User | None, **fields: Any) -> Pipeline:
    """Rename a pipeline or make it the default (the previous default stops being one)."""
    pipeline = Pipeline.objects.select_for_update().get(pk=pipeline.pk)
    before = audited_values(pipeline)

    def check(changed: list[str]) -> None:
        pipeline.full_clean(exclude=["created_at"], validate_constraints=False)
        if pipeline.is_default:
            _make_sole_default(pipeline)

    if apply_fields(pipeline, fields, PIPELINE_EDITABLE_FIELDS, before_save=check):
        record_audit(actor=actor, instance=pipeline, action=AuditAction.UPDATED, before=before)
    return pipeline


def _shift_stages_from(pipeline: Pipeline, order: int) -> None:
    """Make room at `order` by moving that stage and the ones after it one place on (the constraint is deferred)."""
    pipeline.stages.filter(order__gte=order).update(order=models.F("order") + 1)


@transaction.atomic
def create_stage(
    *, actor: User | None, pipeline: Pipeline, name: str, order: int | None = None, **fields: Any
) -> Stage:
    """Add an open stage to `pipeline` at `order` (default: after the last stage); later stages move one place on.

    A pipeline keeps its one won and one lost stage, so only open stages are added.
    """
    if fields.get("kind", StageKind.OPEN) != StageKind.OPEN:
        raise ValidationError({"kind": "A pipeline has exactly one won and one lost stage; add open stages only."})
    pipeline = Pipeline.objects.select_for_update().get(pk=pipeline.pk)
    last = pipeline.stages.aggregate(last=models.Max("order"))["last"] or 0
    order = last + 1 if order is None else order
    if order < 1:
        raise ValidationError({"order": "Stage order starts at 1."})
    stage = Stage(pipeline=pipeline, name=name, order=order)
    set_fields(stage, fields, STAGE_EDITABLE_FIELDS | {"kind"})
    _validate_stage(stage)
    _shift_stages_from(pipeline, order)
    stage.save()
    record_audit(actor=actor, instance=stage, action=AuditAction.CREATED)
    _send_on_commit(signals.configuration_changed, actor=actor, pipeline=pipeline, stages=[stage])
    return stage


@transaction.atomic
def update_stage(*, stage: Stage, actor: User | None, **fields: Any) -> Stage:
    """Change a stage's name, probability, rotting days, required fields, forecast category or place.

    A new `order` already taken swaps the two stages. New required fields apply to deals entering the stage from
    now on; deals already in it are not re-checked. A change to what numbers read (`STAGE_FIELDS_COUNTED`) sends
    `signals.configuration_changed` once committed, so that the metrics are recomputed with it.
    """
    stage = Stage.objects.select_for_update().get(pk=stage.pk)
    old_order = stage.order
    before = audited_values(stage)

    def check_and_make_room(changed: list[str]) -> None:
        if stage.order < 1:
            raise ValidationError({"order": "Stage order starts at 1."})
        _validate_stage(stage)
        if stage.order != old_order:
            Stage.objects.filter(pipeline_id=stage.pipeline_id, order=stage.order).update(order=old_order)

    if not apply_fields(stage, fields, STAGE_EDITABLE_FIELDS, before_save=check_and_make_room):
        return stage
    if stage.forecast_category != before["forecast_category"]:
        with field_history.acting_as(_actor_id(actor)):
            _restamp_default_category(stage)
    record_audit(actor=actor, instance=stage, action=AuditAction.UPDATED, before=before)
    if any(getattr(stage, name) != before[name] for name in STAGE_FIELDS_COUNTED):
        _send_on_commit(signals.configuration_changed, actor=actor, pipeline=stage.pipeline, stages=[stage])
    return stage


def _restamp_default_category(stage: Stage) -> None:
    """Give the stage's deals without an override its new default category, set-based (SPEC §2).

    The deals' version moves on, as for any change to what they read as: an If-Match taken before is stale, and an
    `updated_since` sync picks them up.
    """
    Deal.objects.filter(stage=stage, forecast_category_override__isnull=True).exclude(
        forecast_category=stage.forecast_category
    ).update(forecast_category=stage.forecast_category, version=F("version") + 1, updated_at=timezone.now())


@transaction.atomic
def create_lost_reason(*, actor: User | None, name: str, is_active: bool = True) -> LostReason:
    """Add a reason deals can be lost for."""
    lost_reason = LostReason(name=name, is_active=is_active)
    _save_lost_reason(lost_reason)
    record_audit(actor=actor, instance=lost_reason, action=AuditAction.CREATED)
    return lost_reason


def _validate_lost_reason(lost_reason: LostReason) -> None:
    try:
        lost_reason.full_clean()
    except ValidationError as error:
        if NON_FIELD_ERRORS in error.message_dict:  # the case-insensitive unique name
            raise ValidationError({"name": LOST_REASON_NAME_TAKEN}) from error
        raise


@contextmanager
def _refusing_taken_lost_reason_names() -> Iterator[None]:
    """A name taken in another case is an error on `name`, also when the database finds it (it holds the rule, so
    a concurrent writer that got there first is refused the same way)."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as error:
        raise ValidationError({"name": LOST_REASON_NAME_TAKEN}) from error


def _save_lost_reason(lost_reason: LostReason) -> None:
    _validate_lost_reason(lost_reason)
    with _refusing_taken_lost_reason_names():
        lost_reason.save()


@transaction.atomic
def update_lost_reason(*, lost_reason: LostReason, actor: User | None, **fields: Any) -> LostReason:
    """Rename a lost reason or retire it (`is_active` false: deals lost for it keep it, new losses cannot use it)."""
    before = audited_values(lost_reason)
    with _refusing_taken_lost_reason_names():
        changed = apply_fields(
            lost_reason, fields, LOST_REASON_EDITABLE_FIELDS, before_save=lambda _: _validate_lost_reason(lost_reason)
        )
    if changed:
        record_audit(actor=actor, instance=lost_reason, action=AuditAction.UPDATED, before=before)
    return lost_reason
