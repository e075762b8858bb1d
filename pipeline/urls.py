"""Browser pages of the pipeline (the REST API lives under pipeline/api/)."""

from django.urls import path

from pipeline import views

app_name = "pipeline"

urlpatterns = [
    path("board/", views.board, name="board"),
    path("board/<int:pipeline_id>/", views.board, name="board_pipeline"),
    path("board/<int:pipeline_id>/stages/<int:stage_id>/cards/", views.board_column_more, name="board_column_more"),
    path("board/<int:pipeline_id>/deals/new/", views.deal_create, name="deal_create"),
    path("deals/<int:pk>/", views.deal_detail, name="deal"),
    path("deals/<int:pk>/move/", views.deal_move, name="deal_move"),
    path("deals/<int:pk>/fields/", views.deal_fields, name="deal_fields"),
    path("deals/<int:pk>/activities/", views.deal_activity_create, name="deal_activity_create"),
    path("leads/", views.lead_list, name="leads"),
    path("leads/new/", views.lead_create, name="lead_create"),
    path("leads/<int:pk>/", views.lead_detail, name="lead"),
    path("leads/<int:pk>/qualification/", views.lead_qualify, name="lead_qualify"),
    path("leads/<int:pk>/status/", views.lead_status, name="lead_status"),
    path("leads/<int:pk>/convert/", views.lead_convert, name="lead_convert"),
    path("leads/<int:pk>/activities/", views.lead_activity_create, name="lead_activity_create"),
    path("activities/", views.activity_inbox, name="activities"),
    path("activities/<int:pk>/done/", views.activity_complete, name="activity_complete"),
    path("activities/<int:pk>/next/", views.activity_plan_next, name="activity_plan_next"),
    path("imports/", views.imports, name="imports"),
    path("imports/mapping/", views.import_mapping, name="import_mapping"),
    path("imports/<int:pk>/", views.import_job, name="import_job"),
    path("imports/<int:pk>/progress/", views.import_job_progress, name="import_job_progress"),
    path("imports/<int:pk>/import/", views.import_job_run, name="import_job_run"),
    path("imports/<int:pk>/report.csv", views.import_job_report, name="import_job_report"),
]
