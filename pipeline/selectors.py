"""Reads of the pipeline, each already limited to what the user may see (SPEC §2).

Every page, API endpoint, export and metric gets its rows from these functions, never from `Model.objects`
directly, so a new read path cannot forget the visibility rule.
"""

from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum

from accounts.models import User
from accounts.selectors import owners_editable_by, owners_visible_to
from pipeline.models import (
    Activity,
    AuditEntry,
    Contact,
    Deal,
    DealStatus,
    Lead,
    Organization,
    Pipeline,
    Stage,
    StageChange,
)


def _owned_by(queryset: QuerySet, owners: QuerySet | None, owner_field: str = "owner") -> QuerySet:
    return queryset if owners is None else queryset.filter(**{f"{owner_field}__in": owners})


def visible_deals(user: User) -> QuerySet[Deal]:
    """Deals `user` may see: their own, their teams' (managers), or all (admins)."""
    return _owned_by(Deal.objects.all(), owners_visible_to(user))


def editable_deals(user: User) -> QuerySet[Deal]:
    """Deals `user` may change; a rep who may see teammates' deals still edits only their own."""
    return _owned_by(Deal.objects.all(), owners_editable_by(user))


def visible_leads(user: User) -> QuerySet[Lead]:
    """Leads `user` may see, by the same rule as deals."""
    return _owned_by(Lead.objects.all(), owners_visible_to(user))


def editable_leads(user: User) -> QuerySet[Lead]:
    """Leads `user` may change."""
    return _owned_by(Lead.objects.all(), owners_editable_by(user))


def _visible_activities(user: User, owners: QuerySet | None) -> QuerySet[Activity]:
    if owners is None:
        return Activity.objects.all()
    # An activity on a record the user may see shows on that record's timeline, whoever logged it.
    return Activity.objects.filter(Q(owner__in=owners) | Q(deal__owner__in=owners) | Q(lead__owner__in=owners))


def visible_activities(user: User) -> QuerySet[Activity]:
    """Activities `user` owns or that sit on a deal or lead they may see."""
    return _visible_activities(user, owners_visible_to(user))


def editable_activities(user: User) -> QuerySet[Activity]:
    """Activities `user` may change: their own, or those on deals and leads they may change."""
    return _visible_activities(user, owners_editable_by(user))


def _visible_customers(user: User, queryset: QuerySet, link: str) -> QuerySet:
    """Customer records `user` owns (by the deal rule) or that a deal or lead they may see links to via `link`."""
    owners = owners_visible_to(user)
    if owners is None:
        return queryset
    return queryset.filter(
        Q(owner__in=owners)
        | Exists(Deal.objects.filter(**{link: OuterRef("pk")}, owner__in=owners))
        | Exists(Lead.objects.filter(**{link: OuterRef("pk")}, owner__in=owners))
    )


def visible_organizations(user: User) -> QuerySet[Organization]:
    """Organizations `user` owns (by the deal rule) or that one of their visible deals or leads belongs to."""
    return _visible_customers(user, Organization.objects.all(), "organization")


def visible_contacts(user: User) -> QuerySet[Contact]:
    """Contacts `user` owns (by the deal rule) or that are the contact of one of their visible deals or leads."""
    return _visible_customers(user, Contact.objects.all(), "contact")


def deal_history(*, deal: Deal) -> QuerySet[StageChange]:
    """The stage changes of a deal, oldest first, with the stages and the user who moved it."""
    return deal.stage_changes.select_related("from_stage", "to_stage", "changed_by").order_by("changed_at", "id")


def audit_trail(*, instance: models.Model) -> QuerySet[AuditEntry]:
    """Who changed `instance` and how, newest first. Callers fetch `instance` through a visible_* selector."""
    return AuditEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(instance), object_id=instance.pk
    ).select_related("actor")


def default_pipeline() -> Pipeline | None:
    """The pipeline new deals go to when none is named."""
    return Pipeline.objects.filter(is_default=True).first() or Pipeline.objects.order_by("id").first()


def first_open_stage(*, pipeline: Pipeline) -> Stage | None:
    """Where a new deal starts: the open stage with the lowest order."""
    return pipeline.stages.filter(kind="open").order_by("order").first()


def pipeline_summary(*, user: User) -> list[dict]:
    """Per pipeline: open deal count and amount, and won/lost counts, over the deals `user` may see."""
    totals = (
        visible_deals(user)
        .values("pipeline_id", "pipeline__name")
        .annotate(
            open_count=Count("id", filter=Q(status=DealStatus.OPEN)),
            open_amount=Sum("amount", filter=Q(status=DealStatus.OPEN), default=0),
            won_count=Count("id", filter=Q(status=DealStatus.WON)),
            lost_count=Count("id", filter=Q(status=DealStatus.LOST)),
        )
        .order_by("pipeline__name")
    )
    return list(totals)
