from django.contrib import admin

from forecasting.models import MetricsRun, Quota


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    list_display = ["__str__", "user", "team", "period_start", "period_end", "amount"]
    list_filter = ["team", "period_start"]
    autocomplete_fields = []
    raw_id_fields = ["user"]
    date_hierarchy = "period_start"


@admin.register(MetricsRun)
class MetricsRunAdmin(admin.ModelAdmin):
    """Read-only: runs are written by the recompute."""

    list_display = ["id", "status", "computed_at", "duration_seconds", "row_count"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
