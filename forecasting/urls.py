"""The metrics, forecast and quota endpoints, included under /api/v1/ by config.urls."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from forecasting import api

router = SimpleRouter()
router.register("quotas", api.QuotaViewSet, basename="quota")

LIST = {"get": "list"}

urlpatterns = [
    path("metrics/win-rates/", api.WinRateViewSet.as_view(LIST), name="metrics-win-rates"),
    path("metrics/sales-cycle/", api.SalesCycleViewSet.as_view(LIST), name="metrics-sales-cycle"),
    path("metrics/funnel/", api.FunnelViewSet.as_view(LIST), name="metrics-funnel"),
    path("metrics/stage-times/", api.StageTimeViewSet.as_view(LIST), name="metrics-stage-times"),
    path("metrics/leads/", api.LeadMetricsViewSet.as_view(LIST), name="metrics-leads"),
    path("metrics/stale-deals/", api.StaleDealsViewSet.as_view(LIST), name="metrics-stale-deals"),
    path("metrics/recompute/", api.RecomputeView.as_view(), name="metrics-recompute"),
    path("metrics/recompute/<uuid:task_id>/", api.RecomputeStatusView.as_view(), name="metrics-recompute-status"),
    path("forecast/", api.ForecastViewSet.as_view(LIST), name="forecast"),
    path("forecast/accuracy/", api.ForecastAccuracyViewSet.as_view(LIST), name="forecast-accuracy"),
    *router.urls,
]
