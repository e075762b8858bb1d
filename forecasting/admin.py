from django.contrib import admin

from forecasting import services
from forecasting.models import MetricsRun, Quota


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    """Quotas are written through `forecasting.services` here too, so each change is audited and queues a recompute.

    The form validates with the model's constraints (the same rules `services.create_quota` checks), so a refused
    quota shows as a form error before any service is called.
    """

    list_display = ["__str__", "user", "team", "period_start", "period_end", "amount"]
    list_filter = ["team", "period_start"]
    raw_id_fields = ["user"]
    date_hierarchy = "period_start"
    fields = list(services.QUOTA_EDITABLE_FIELDS)

    def save_model(self, request, obj, form, change) -> None:
        values = {name: form.cleaned_data[name] for name in services.QUOTA_EDITABLE_FIELDS}
        if change:
            # The form has already applied its values to `obj`: the service must see the stored quota as "before".
            stored = Quota.objects.get(pk=obj.pk)
            services.update_quota(quota=stored, actor=request.user, **values)
            obj.refresh_from_db()
        else:
            created = services.create_quota(actor=request.user, **values)
            obj.pk = created.pk
            obj.refresh_from_db()

    def delete_model(self, request, obj) -> None:
        services.delete_quota(quota=obj, actor=request.user)

    def delete_queryset(self, request, queryset) -> None:
        for quota in queryset:
            services.delete_quota(quota=quota, actor=request.user)


@admin.register(MetricsRun)
class MetricsRunAdmin(admin.ModelAdmin):
    """Read-only: runs are written by the recompute."""

    list_display = ["id", "status", "computed_at", "duration_seconds", "row_count"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
