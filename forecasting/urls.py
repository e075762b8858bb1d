"""The metrics read API, included under /api/v1/ by config.urls."""

from django.urls import path

from forecasting import api

urlpatterns = [
    path("metrics/win-rates/", api.WinRateView.as_view(), name="metrics-win-rates"),
    path("metrics/sales-cycle/", api.SalesCycleView.as_view(), name="metrics-sales-cycle"),
    path("metrics/funnel/", api.FunnelView.as_view(), name="metrics-funnel"),
    path("metrics/stage-times/", api.StageTimeView.as_view(), name="metrics-stage-times"),
    path("metrics/leads/", api.LeadMetricsView.as_view(), name="metrics-leads"),
    path("metrics/stale-deals/", api.StaleDealsView.as_view(), name="metrics-stale-deals"),
    path("metrics/recompute/", api.RecomputeView.as_view(), name="metrics-recompute"),
    path("metrics/recompute/<str:task_id>/", api.RecomputeStatusView.as_view(), name="metrics-recompute-status"),
    path("forecast/", api.ForecastView.as_view(), name="forecast"),
    path("forecast/accuracy/", api.ForecastAccuracyView.as_view(), name="forecast-accuracy"),
    path("quotas/", api.QuotaListView.as_view(), name="quotas"),
]
