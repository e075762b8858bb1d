"""The forecasting settings pages: quotas (admins and managers), the learning settings of the metrics (admins).

config.urls puts it under /settings/, in the "settings" namespace, beside those of accounts and pipeline.
"""

from django.urls import path

from forecasting import settings_views as views

urlpatterns = [
    path("quotas/", views.quota_list, name="quotas"),
    path("quotas/<int:pk>/", views.quota_edit, name="quota"),
    path("quotas/<int:pk>/delete/", views.quota_delete, name="quota_delete"),
    path("metrics/", views.metrics_settings, name="metrics"),
]
