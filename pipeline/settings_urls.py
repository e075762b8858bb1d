"""The pipeline's settings pages (admins): pipelines, their stages, lost reasons.

config.urls puts them under /settings/, in the "settings" namespace, beside those of accounts and forecasting.
"""

from django.urls import path

from pipeline import settings_views as views

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
]
