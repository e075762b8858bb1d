"""Admin for configuration (pipelines, stages, lost reasons) and for looking at records.

Deals and leads are read-only here: their changes go through `pipeline.services` (history, versions, events),
which the browser app and the API call.
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import AuditAction
from accounts.services import record_audit
from pipeline import services, signals
from pipeline.models import (
    Activity,
    Contact,
    Deal,
    ImportJob,
    Lead,
    LostReason,
    Organization,
    Pipeline,
    Stage,
    StageChange,
)


class StageInlineFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        """A pipeline needs exactly one won and one lost stage; say so here rather than fail at commit."""
        super().clean()
        kinds = [
            form.cleaned_data.get("kind")
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE", False)
        ]
        problems = [
            f"exactly one {kind} stage (found {kinds.count(kind)})"
            for kind in ("won", "lost")
            if kinds.count(kind) != 1
        ]
        if problems:
            raise ValidationError(f"A pipeline needs {' and '.join(problems)}.")


class AuditedAdmin(admin.ModelAdmin):
    """Configuration edited here lands in the same audit trail as the services' writes."""

    def save_model(self, request, obj, form, change) -> None:
        before = _before_form_changes(form) if change else None
        super().save_model(request, obj, form, change)
        action = AuditAction.UPDATED if change else AuditAction.CREATED
        record_audit(actor=request.user, instance=obj, action=action, before=before)

    def delete_model(self, request, obj) -> None:
        record_audit(actor=request.user, instance=obj, action=AuditAction.DELETED)
        super().delete_model(request, obj)

    def save_formset(self, request, form, formset, change) -> None:
        deleted = [inline.instance for inline in formset.deleted_forms if inline.instance.pk]
        edited = [
            (inline, inline.instance.pk is None, _before_form_changes(inline))
            for inline in formset.forms
            if inline.has_changed() and inline not in formset.deleted_forms
        ]
        for instance in deleted:
            record_audit(actor=request.user, instance=instance, action=AuditAction.DELETED)
        super().save_formset(request, form, formset, change)
        for inline, created, before in edited:
            action = AuditAction.CREATED if created else AuditAction.UPDATED
            record_audit(
                actor=request.user, instance=inline.instance, action=action, before=None if created else before
            )


def _before_form_changes(form) -> dict:
    """The instance's values before the form's changes: validation has already applied them to the instance."""
    instance = form.instance
    current = {field.name: getattr(instance, field.attname) for field in instance._meta.concrete_fields}
    return current | {name: form.initial.get(name) for name in form.changed_data if name in current}


class StageInline(admin.TabularInline):
    model = Stage
    formset = StageInlineFormSet
    fields = ["order", "name", "kind", "probability", "rotting_days", "forecast_category", "required_fields"]
    ordering = ["order"]
    extra = 0


@admin.register(Pipeline)
class PipelineAdmin(AuditedAdmin):
    list_display = ["name", "is_default", "created_at"]
    inlines = [StageInline]

    def save_formset(self, request, form, formset, change) -> None:
        """Stages added, removed or changed in what numbers read are signalled as from `services.update_stage`."""
        counted = [
            inline.instance
            for inline in formset.forms
            if inline.has_changed()
            and (inline.instance.pk is None or set(inline.changed_data) & set(services.STAGE_FIELDS_COUNTED))
        ]
        deleted = bool(formset.deleted_forms)
        super().save_formset(request, form, formset, change)
        if counted or deleted:
            pipeline = form.instance
            transaction.on_commit(
                lambda: signals.configuration_changed.send_robust(
                    sender=None, actor=request.user, pipeline=pipeline, stages=counted
                )
            )


@admin.register(LostReason)
class LostReasonAdmin(AuditedAdmin):
    list_display = ["name", "is_active"]
    list_filter = ["is_active"]


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class StageChangeInline(admin.TabularInline):
    model = StageChange
    fk_name = "deal"
    fields = ["changed_at", "from_stage", "to_stage", "changed_by"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Deal)
class DealAdmin(ReadOnlyAdmin):
    list_display = ["title", "pipeline", "stage", "status", "owner", "amount", "expected_close_date", "updated_at"]
    list_filter = ["pipeline", "status", "forecast_category"]
    list_select_related = ["pipeline", "stage", "owner"]
    search_fields = ["title", "external_id", "organization__name"]
    inlines = [StageChangeInline]


@admin.register(Lead)
class LeadAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "status", "owner", "source", "score", "created_at"]
    list_filter = ["status", "source"]
    list_select_related = ["owner"]
    search_fields = ["last_name", "company", "email", "external_id"]


@admin.register(Organization)
class OrganizationAdmin(ReadOnlyAdmin):
    list_display = ["name", "industry", "owner"]
    search_fields = ["name", "external_id"]


@admin.register(Contact)
class ContactAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "organization", "email", "owner"]
    list_select_related = ["organization", "owner"]
    search_fields = ["last_name", "email", "external_id"]


@admin.register(Activity)
class ActivityAdmin(ReadOnlyAdmin):
    list_display = ["subject", "kind", "owner", "due_at", "done_at"]
    list_filter = ["kind"]
    list_select_related = ["owner"]


@admin.register(ImportJob)
class ImportJobAdmin(ReadOnlyAdmin):
    """What was imported, by whom, and what became of it; imports are started from the command, API or page."""

    list_display = [
        "id", "kind", "original_name", "status", "dry_run", "processed_rows", "created_count", "updated_count",
        "error_count", "created_by", "created_at",
    ]  # fmt: skip
    list_filter = ["kind", "status", "dry_run"]
    list_select_related = ["created_by"]
