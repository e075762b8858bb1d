"""The settings pages (/settings/): admins' pipelines, stages, lost reasons and teams; admins' and managers'
quotas; everyone's API tokens."""

from django.urls import path

from accounts import settings_views as account_settings
from forecasting import settings_views as quota_settings
from pipeline import settings_views as views

app_name = "settings"

urlpatterns = [
    path("", views.pipeline_list, name="pipelines"),
    path("pipelines/<int:pk>/", views.pipeline_detail, name="pipeline"),
    path("pipelines/<int:pk>/name/", views.pipeline_rename, name="pipeline_rename"),
    path("pipelines/<int:pk>/default/", views.pipeline_make_default, name="pipeline_make_default"),
    path("pipelines/<int:pk>/stages/", views.stage_create, name="stage_create"),
    path("pipelines/<int:pk>/stages/order/", views.stage_reorder, name="stage_reorder"),
    path("stages/<int:pk>/", views.stage_edit, name="stage"),
    path("stages/<int:pk>/move/", views.stage_move, name="stage_move"),
    path("lost-reasons/", views.lost_reason_list, name="lost_reasons"),
    path("lost-reasons/<int:pk>/", views.lost_reason_edit, name="lost_reason"),
    path("lost-reasons/<int:pk>/active/", views.lost_reason_toggle, name="lost_reason_toggle"),
    path("teams/", account_settings.team_list, name="teams"),
    path("teams/<int:pk>/", account_settings.team_edit, name="team"),
    path("quotas/", quota_settings.quota_list, name="quotas"),
    path("quotas/<int:pk>/", quota_settings.quota_edit, name="quota"),
    path("quotas/<int:pk>/delete/", quota_settings.quota_delete, name="quota_delete"),
    path("tokens/", account_settings.token_list, name="tokens"),
    path("tokens/<int:pk>/revoke/", account_settings.token_revoke, name="token_revoke"),
]
