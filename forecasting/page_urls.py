"""The browser pages of the forecasting app (the dashboard), included at /dashboard/ by config.urls."""

from django.urls import path

from forecasting import views

app_name = "forecasting"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("waterfall/", views.waterfall, name="waterfall"),
    path("recompute/", views.recompute, name="recompute"),
    path("recompute/<str:task_id>/", views.recompute_status, name="recompute_status"),
]
