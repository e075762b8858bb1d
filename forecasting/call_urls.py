"""The forecast call's browser pages, included at /forecast/ by config.urls."""

from django.urls import path

from forecasting import views

app_name = "forecast"

urlpatterns = [
    path("", views.forecast_call, name="call"),
    path("submit/", views.submit_call, name="submit"),
    path("adjust/<int:user_id>/", views.adjust_call, name="adjust"),
    path("adjust-team/<int:team_id>/", views.adjust_team_call, name="adjust_team"),
]
