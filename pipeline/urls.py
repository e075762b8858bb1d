"""Browser pages of the pipeline (the REST API lives under pipeline/api/)."""

from django.urls import path

from pipeline.views import activities, board, contacts, deal_table, deals, imports, leads, moves, organizations

app_name = "pipeline"

urlpatterns = [
    path("board/", board.board, name="board"),
    path("board/<int:pipeline_id>/", board.board, name="board_pipeline"),
    path("board/<int:pipeline_id>/stages/<int:stage_id>/cards/", board.board_column_more, name="board_column_more"),
    path("board/<int:pipeline_id>/stages/<int:stage_id>/deals/new/", board.board_quick_add, name="board_quick_add"),
    path("board/<int:pipeline_id>/deals/new/", deals.deal_create, name="deal_create"),
    path("deals/", deal_table.deal_table, name="deal_table"),
    path("deals/export.csv", deal_table.deal_table_export, name="deal_table_export"),
    path("deals/bulk/", deal_table.deal_table_bulk, name="deal_table_bulk"),
    path("deals/views/", deal_table.deal_view_save, name="deal_view_save"),
    path("deals/views/<int:pk>/delete/", deal_table.deal_view_delete, name="deal_view_delete"),
    path("deals/<int:pk>/", deals.deal_detail, name="deal"),
    path("deals/<int:pk>/move/", moves.deal_move, name="deal_move"),
    path("deals/<int:pk>/fields/", deals.deal_fields, name="deal_fields"),
    path("deals/<int:pk>/fields/<str:name>/", deals.deal_field, name="deal_field"),
    path("deals/<int:pk>/activities/", deals.deal_activity_create, name="deal_activity_create"),
    path("leads/", leads.lead_list, name="leads"),
    path("leads/new/", leads.lead_create, name="lead_create"),
    path("leads/<int:pk>/", leads.lead_detail, name="lead"),
    path("leads/<int:pk>/qualification/", leads.lead_qualify, name="lead_qualify"),
    path("leads/<int:pk>/status/", leads.lead_status, name="lead_status"),
    path("leads/<int:pk>/convert/", leads.lead_convert, name="lead_convert"),
    path("leads/<int:pk>/activities/", leads.lead_activity_create, name="lead_activity_create"),
    path("organizations/", organizations.organization_list, name="organizations"),
    path("organizations/new/", organizations.organization_create, name="organization_create"),
    path("organizations/<int:pk>/", organizations.organization_detail, name="organization"),
    path("organizations/<int:pk>/edit/", organizations.organization_edit, name="organization_edit"),
    path("contacts/", contacts.contact_list, name="contacts"),
    path("contacts/new/", contacts.contact_create, name="contact_create"),
    path("contacts/<int:pk>/", contacts.contact_detail, name="contact"),
    path("contacts/<int:pk>/edit/", contacts.contact_edit, name="contact_edit"),
    path("activities/", activities.activity_inbox, name="activities"),
    path("activities/<int:pk>/done/", activities.activity_complete, name="activity_complete"),
    path("activities/<int:pk>/next/", activities.activity_plan_next, name="activity_plan_next"),
    path("imports/", imports.imports, name="imports"),
    path("imports/mapping/", imports.import_mapping, name="import_mapping"),
    path("imports/<int:pk>/", imports.import_job, name="import_job"),
    path("imports/<int:pk>/progress/", imports.import_job_progress, name="import_job_progress"),
    path("imports/<int:pk>/import/", imports.import_job_run, name="import_job_run"),
    path("imports/<int:pk>/report.csv", imports.import_job_report, name="import_job_report"),
]
