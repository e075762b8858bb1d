"""API viewsets of the pipeline (SPEC §4): thin. Rows come from the `visible_*` / `editable_*` selectors through
`config.api.VisibleViewSet`; every write is one call to `pipeline.services`.

A write locks the record, checks `If-Match` against its current ETag (412), then calls the service, all in one
transaction (`VisibleViewSet.editing()`), so that two writers holding the same ETag cannot both succeed; `PUT` and
`PATCH` are `config.api.UpdateMixin`'s, and each viewset's `perform_update` names the service.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.api.serializers import UserSummarySerializer
from accounts.selectors import visible_users
from config.api import AdminWritesOnly, BatchUpsertMixin, Expansion, UpdateMixin, VisibleViewSet
from pipeline import selectors, services
from pipeline.api import filters
from pipeline.api import serializers as s
from pipeline.api.exports import csv_download, export_action
from pipeline.models import Activity, Contact, Deal, Lead, LostReason, Organization, Pipeline, Stage


class AuditTrailActions:
    """`GET {id}/audit/`: who changed the record, which fields from what to what, and when (newest first).

    The record is looked up like any detail read, so the trail is visible exactly when the record is.
    """

    @extend_schema(
        responses=s.AuditEntrySerializer(many=True),
        description="Who changed this record, which fields from what to what, and when; newest first.",
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def audit(self, request, pk=None):
        page = self.paginate_queryset(selectors.audit_trail(instance=self.get_object()))
        return self.get_paginated_response(s.AuditEntrySerializer(page, many=True).data)


# What `?expand=` may nest in a read, each related record shown only if the user may see it (its id alone if not).
EXPANSIONS = {
    "pipeline": Expansion(s.PipelineSummarySerializer, selectors.visible_pipelines),
    "stage": Expansion(s.StageSummarySerializer, selectors.visible_stages),
    "lost_reason": Expansion(s.LostReasonSummarySerializer, selectors.visible_lost_reasons),
    "organization": Expansion(s.OrganizationSummarySerializer, selectors.visible_organizations),
    "contact": Expansion(s.ContactSummarySerializer, selectors.visible_contacts),
    "deal": Expansion(s.DealSummarySerializer, selectors.visible_deals),
    "lead": Expansion(s.LeadSummarySerializer, selectors.visible_leads),
    "owner": Expansion(UserSummarySerializer, visible_users),
}


def expansions(*names: str) -> dict[str, Expansion]:
    return {name: EXPANSIONS[name] for name in names}


# --- Configuration: everyone signed in reads it, admins change it ------------------------------------------------


class PipelineViewSet(AuditTrailActions, UpdateMixin, VisibleViewSet):
    """Pipelines with their stages."""

    model = Pipeline
    serializer_class = s.PipelineSerializer
    permission_classes = [AdminWritesOnly]
    search_fields = ["name"]
    ordering_fields = ["name", "created_at", "id"]

    def visible_queryset(self):
        # The serializer nests each pipeline's stages.
        return selectors.visible_pipelines(self.request.user).prefetch_related("stages")

    def editable_queryset(self):
        return self.visible_queryset()  # AdminWritesOnly has already let only admins this far

    def get_serializer_class(self):
        return s.PipelineCreateSerializer if self.action == "create" else s.PipelineSerializer

    @extend_schema(responses={201: s.PipelineSerializer})
    def create(self, request):
        pipeline = services.create_pipeline(actor=request.user, **self.validated_data())
        return self.detail_response(pipeline, status_code=status.HTTP_201_CREATED)

    def perform_update(self, pipeline, data):
        return services.update_pipeline(pipeline=pipeline, actor=self.request.user, **data)


class StageViewSet(AuditTrailActions, UpdateMixin, VisibleViewSet):
    """The stages of every pipeline, in pipeline order."""

    model = Stage
    serializer_class = s.StageSerializer
    expandable = expansions("pipeline")
    permission_classes = [AdminWritesOnly]
    filterset_class = filters.StageFilter
    search_fields = ["name"]
    ordering_fields = ["order", "name", "probability", "id"]

    def visible_queryset(self):
        return selectors.visible_stages(self.request.user)

    def editable_queryset(self):
        return self.visible_queryset()  # AdminWritesOnly has already let only admins this far

    def get_serializer_class(self):
        return s.StageCreateSerializer if self.action == "create" else s.StageSerializer

    @extend_schema(responses={201: s.StageSerializer})
    def create(self, request):
        stage = services.create_stage(actor=request.user, **self.validated_data())
        return self.detail_response(stage, status_code=status.HTTP_201_CREATED)

    def perform_update(self, stage, data):
        return services.update_stage(stage=stage, actor=self.request.user, **data)


class LostReasonViewSet(AuditTrailActions, UpdateMixin, VisibleViewSet):
    """Why deals are lost; only active reasons may be given to a new loss."""

    model = LostReason
    serializer_class = s.LostReasonSerializer
    permission_classes = [AdminWritesOnly]
    search_fields = ["name"]
    ordering_fields = ["name", "id"]

    def visible_queryset(self):
        return selectors.visible_lost_reasons(self.request.user)

    def editable_queryset(self):
        return self.visible_queryset()  # AdminWritesOnly has already let only admins this far

    @extend_schema(responses={201: s.LostReasonSerializer})
    def create(self, request):
        lost_reason = services.create_lost_reason(actor=request.user, **self.validated_data())
        return self.detail_response(lost_reason, status_code=status.HTTP_201_CREATED)

    def perform_update(self, lost_reason, data):
        return services.update_lost_reason(lost_reason=lost_reason, actor=self.request.user, **data)


# --- Customers ----------------------------------------------------------------------------------------------------


class OrganizationViewSet(AuditTrailActions, BatchUpsertMixin, UpdateMixin, VisibleViewSet):
    model = Organization
    serializer_class = create_serializer_class = s.OrganizationSerializer
    expandable = expansions("owner")
    filterset_class = filters.OrganizationFilter
    search_fields = ["name", "website", "external_id"]
    ordering_fields = ["name", "created_at", "updated_at", "id"]  # each served by an index

    @export_action("The organizations of the list (same filters and search) as CSV, in the columns the import reads.")
    def export(self, request):
        return csv_download(
            kind="organizations", user=request.user, narrow=self.filter_queryset, filename="organizations.csv"
        )

    def visible_queryset(self):
        return selectors.visible_organizations(self.request.user)

    def editable_queryset(self):
        return selectors.editable_organizations(self.request.user)

    @extend_schema(responses={201: s.OrganizationSerializer})
    def create(self, request):
        organization = self.perform_create(self.validated_data())
        return self.detail_response(organization, status_code=status.HTTP_201_CREATED)

    def perform_create(self, data):
        return services.create_organization(actor=self.request.user, **data)

    def perform_update(self, organization, data):
        return services.update_organization(organization=organization, actor=self.request.user, **data)


class ContactViewSet(AuditTrailActions, BatchUpsertMixin, UpdateMixin, VisibleViewSet):
    model = Contact
    serializer_class = create_serializer_class = s.ContactSerializer
    expandable = expansions("organization", "owner")
    filterset_class = filters.ContactFilter
    search_fields = ["first_name", "last_name", "email", "external_id"]
    ordering_fields = ["last_name", "created_at", "updated_at", "id"]  # each served by an index

    @export_action("The contacts of the list (same filters and search) as CSV, in the columns the import reads.")
    def export(self, request):
        return csv_download(kind="contacts", user=request.user, narrow=self.filter_queryset, filename="contacts.csv")

    def visible_queryset(self):
        return selectors.visible_contacts(self.request.user)

    def editable_queryset(self):
        return selectors.editable_contacts(self.request.user)

    @extend_schema(responses={201: s.ContactSerializer})
    def create(self, request):
        contact = self.perform_create(self.validated_data())
        return self.detail_response(contact, status_code=status.HTTP_201_CREATED)

    def perform_create(self, data):
        return services.create_contact(actor=self.request.user, **data)

    def perform_update(self, contact, data):
        return services.update_contact(contact=contact, actor=self.request.user, **data)


# --- Deals --------------------------------------------------------------------------------------------------------


@extend_schema_view(
    update=extend_schema(description="Change a deal's fields (not its stage: see move)."),
    partial_update=extend_schema(description="Change some of a deal's fields (not its stage: see move)."),
)
class DealViewSet(AuditTrailActions, BatchUpsertMixin, UpdateMixin, VisibleViewSet):
    model = Deal
    serializer_class = s.DealSerializer
    expandable = expansions("organization", "contact", "owner", "pipeline", "stage", "lost_reason")
    create_serializer_class = s.DealCreateSerializer
    filterset_class = filters.DealFilter
    # What `search_queryset` searches, named here for the schema; the query is `selectors.search_deals`.
    search_fields = ["title", "external_id", "organization__name", "contact__first_name", "contact__last_name"]
    # Each served by an index (pipeline.models.Deal.Meta.indexes), whatever the filters: a page is read from it
    # rather than every visible deal sorted (README, "Walking a list through the API").
    ordering_fields = ["amount", "expected_close_date", "created_at", "updated_at", "id"]

    @export_action("The deals of the list (same filters and search) as CSV, in the columns the import reads.")
    def export(self, request):
        return csv_download(kind="deals", user=request.user, narrow=self.filter_queryset, filename="deals.csv")

    @export_action(
        "The stage changes of the listed deals (same filters and search) as CSV: the `stage_changes` import kind.",
        url_path="export-history",
    )
    def export_history(self, request):
        def narrow(changes):
            return changes.filter(deal__in=self.filter_queryset(self.visible_queryset()).values("pk"))

        return csv_download(kind="stage_changes", user=request.user, narrow=narrow, filename="stage_changes.csv")

    def visible_queryset(self):
        searched = bool(self.request.query_params.get("search", "").strip())
        return selectors.visible_deals(self.request.user, searched=searched)

    def search_queryset(self, deals, terms):
        return selectors.search_deals(deals, terms)

    def editable_queryset(self):
        return selectors.editable_deals(self.request.user)

    def get_serializer_class(self):
        return {
            "create": self.create_serializer_class,
            "move": s.DealMoveSerializer,
            "history": s.StageChangeSerializer,
        }.get(self.action, s.DealSerializer)

    @extend_schema(responses={201: s.DealSerializer})
    def create(self, request):
        deal = self.perform_create(self.validated_data())
        return self.detail_response(deal, status_code=status.HTTP_201_CREATED)

    def perform_create(self, data):
        return services.create_deal(actor=self.request.user, **data)

    def batch_scope(self, external_ids):
        return services.deal_batch(actor=self.request.user, external_ids=external_ids)

    def perform_update(self, deal, data):
        return services.update_deal(
            deal=deal, actor=self.request.user, expected_version=data.pop("version", None), **data
        )

    @extend_schema(
        responses={200: s.DealSerializer},
        description=(
            "Move the deal to a stage of its pipeline (forwards, backwards, won, lost or reopened), filling in what "
            "that stage requires in the same step. Each required field still missing is named in the 400 answer; "
            "losing needs `lost_reason`."
        ),
    )
    @action(detail=True, methods=["post"])
    def move(self, request, pk=None):
        with self.editing() as deal:
            data = self.validated_data()
            deal = services.move_deal(
                deal=deal,
                actor=request.user,
                stage=data.pop("stage"),
                lost_reason=data.pop("lost_reason", None),
                expected_version=data.pop("version", None),
                fields=data,
            )
        return self.detail_response(deal)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "as_of",
                OpenApiTypes.DATETIME,
                description=(
                    "The deals as they stood at this ISO 8601 instant (read-only): pipeline, stage, status, owner, "
                    "amount, currency, expected close date and forecast category are those of then, and the filters "
                    "on them (pipeline, stage, status, owner, team, amount, expected close) read them; other fields "
                    "are today's. Deals created later or deleted since are not listed. An instant in the future or "
                    "before the recorded history begins answers 400."
                ),
            )
        ]
    )
    def list(self, request, *args, **kwargs):
        at = filters.as_of_parameter(request.query_params)
        if at is None:
            return super().list(request, *args, **kwargs)
        if "expand" in request.query_params:
            # The related records as they are today would sit beside the deal as it was.
            raise exceptions.ValidationError({"expand": ["Not with as_of: a deal of then shows the ids of then."]})
        queryset = self.filter_queryset(selectors.deals_as_of(user=request.user, at=at))
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.shaped(s.DealAsOfSerializer(page, many=True)).data)

    @extend_schema(
        operation_id="deals_changes_list",
        responses=s.DealChangeSerializer(many=True),
        description=(
            "Every change of the deal's stage, owner, amount, currency, expected close date and forecast category, "
            "newest first: one row per field changed, with who changed it (null when not known) and when."
        ),
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def changes(self, request, pk=None):
        page = self.paginate_queryset(selectors.deal_changes(deal=self.get_object()))
        return self.get_paginated_response(s.DealChangeSerializer(page, many=True).data)

    @extend_schema(
        operation_id="deals_history_list",
        responses=s.StageChangeSerializer(many=True),
        description="Every stage the deal entered, oldest first.",
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def history(self, request, pk=None):
        page = self.paginate_queryset(selectors.deal_history(deal=self.get_object()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


# --- Leads --------------------------------------------------------------------------------------------------------


class LeadViewSet(AuditTrailActions, BatchUpsertMixin, UpdateMixin, VisibleViewSet):
    model = Lead
    serializer_class = s.LeadSerializer
    expandable = expansions("organization", "contact", "owner", "deal")
    create_serializer_class = s.LeadCreateSerializer
    filterset_class = filters.LeadFilter
    search_fields = ["first_name", "last_name", "email", "company", "external_id"]
    ordering_fields = ["created_at", "updated_at", "id"]  # each served by an index

    @export_action("The leads of the list (same filters and search) as CSV, in the columns the import reads.")
    def export(self, request):
        return csv_download(kind="leads", user=request.user, narrow=self.filter_queryset, filename="leads.csv")

    def visible_queryset(self):
        return selectors.visible_leads(self.request.user)

    def editable_queryset(self):
        return selectors.editable_leads(self.request.user)

    def get_serializer_class(self):
        return {
            "create": self.create_serializer_class,
            "set_status": s.LeadStatusSerializer,
            "convert": s.LeadConvertSerializer,
        }.get(self.action, s.LeadSerializer)

    @extend_schema(responses={201: s.LeadSerializer})
    def create(self, request):
        lead = self.perform_create(self.validated_data())
        return self.detail_response(lead, status_code=status.HTTP_201_CREATED)

    def perform_create(self, data):
        return services.create_lead(actor=self.request.user, **data)

    def perform_update(self, lead, data):
        return services.update_lead(lead=lead, actor=self.request.user, **data)

    @extend_schema(responses={200: s.LeadSerializer}, description=s.LeadStatusSerializer.__doc__)
    @action(detail=True, methods=["post"], url_path="status")
    def set_status(self, request, pk=None):
        with self.editing() as lead:
            lead = services.advance_lead(lead=lead, actor=request.user, **self.validated_data())
        return self.detail_response(lead)

    @extend_schema(
        responses={201: s.DealSerializer},
        description="Turn the lead into a deal, creating its organization and contact when missing.",
    )
    @action(detail=True, methods=["post"])
    def convert(self, request, pk=None):
        with self.editing() as lead:
            deal = services.convert_lead(lead=lead, actor=request.user, **self.validated_data())
        data = s.DealSerializer(deal, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_201_CREATED, headers={"ETag": f'W/"{deal.version}"'})


# --- Activities ---------------------------------------------------------------------------------------------------


class ActivityViewSet(UpdateMixin, VisibleViewSet):
    model = Activity
    serializer_class = s.ActivitySerializer
    expandable = expansions("deal", "lead", "owner")
    filterset_class = filters.ActivityFilter
    search_fields = ["subject", "note"]
    ordering_fields = ["created_at", "updated_at", "id"]  # each served by an index

    @export_action("The activities of the list (same filters and search) as CSV, in the columns the import reads.")
    def export(self, request):
        return csv_download(
            kind="activities", user=request.user, narrow=self.filter_queryset, filename="activities.csv"
        )

    def visible_queryset(self):
        return selectors.visible_activities(self.request.user)

    def editable_queryset(self):
        return selectors.editable_activities(self.request.user)

    def get_serializer_class(self):
        return s.ActivityCreateSerializer if self.action == "create" else s.ActivitySerializer

    @extend_schema(responses={201: s.ActivitySerializer})
    def create(self, request):
        activity = services.log_activity(actor=request.user, **self.validated_data())
        return self.detail_response(activity, status_code=status.HTTP_201_CREATED)

    def perform_update(self, activity, data):
        return services.update_activity(activity=activity, actor=self.request.user, **data)

    @extend_schema(request=None, responses={200: s.ActivitySerializer}, description="Mark a planned activity done.")
    @action(detail=True, methods=["post"])
    def complete(self, request, pk=None):
        with self.editing() as activity:
            activity = services.complete_activity(activity=activity, actor=request.user)
        return self.detail_response(activity)
