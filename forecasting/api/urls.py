"""The metrics, forecast and quota endpoints, included under /api/v1/ by config.urls."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from forecasting.api import views

router = SimpleRouter()
router.register("quotas", views.QuotaViewSet, basename="quota")
router.register("forecast/submissions", views.ForecastSubmissionViewSet, basename="forecast-submission")
router.register("forecast/adjustments", views.ForecastAdjustmentViewSet, basename="forecast-adjustment")

LIST = {"get": "list"}

urlpatterns = [
    path("metrics/win-rates/", views.WinRateViewSet.as_view(LIST), name="metrics-win-rates"),
    path("metrics/sales-cycle/", views.SalesCycleViewSet.as_view(LIST), name="metrics-sales-cycle"),
    path("metrics/funnel/", views.FunnelViewSet.as_view(LIST), name="metrics-funnel"),
    path("metrics/stage-times/", views.StageTimeViewSet.as_view(LIST), name="metrics-stage-times"),
    path("metrics/leads/", views.LeadMetricsViewSet.as_view(LIST), name="metrics-leads"),
    path("metrics/stale-deals/", views.StaleDealsViewSet.as_view(LIST), name="metrics-stale-deals"),
    path("metrics/recompute/", views.RecomputeView.as_view(), name="metrics-recompute"),
    path("metrics/recompute/<uuid:task_id>/", views.RecomputeStatusView.as_view(), name="metrics-recompute-status"),
    path("metrics/calibration/", views.CalibrationViewSet.as_view(LIST), name="metrics-calibration"),
    path("metrics/slippage/", views.SlippageView.as_view(), name="metrics-slippage"),
    path("forecast/waterfall/", views.WaterfallView.as_view(), name="forecast-waterfall"),
    path("forecast/waterfall/deals/", views.WaterfallDealsView.as_view(), name="forecast-waterfall-deals"),
    path("forecast/pacing/", views.PacingView.as_view(), name="forecast-pacing"),
    path("forecast/", views.ForecastViewSet.as_view(LIST), name="forecast"),
    path("forecast/accuracy/", views.ForecastAccuracyViewSet.as_view(LIST), name="forecast-accuracy"),
    path("forecast/backtest/", views.BacktestViewSet.as_view(LIST), name="forecast-backtest"),
    path("forecast/rollup/", views.ForecastRollupView.as_view(), name="forecast-rollup"),
    path("forecast/trend/", views.ForecastTrendView.as_view(), name="forecast-trend"),
    path("forecast/commit-reliability/", views.CommitReliabilityView.as_view(), name="forecast-commit-reliability"),
    *router.urls,
]
