from rest_framework.routers import SimpleRouter

from pipeline.api import imports, views
from pipeline.webhooks.views import EventViewSet, WebhookSubscriptionViewSet

router = SimpleRouter()
router.register("pipelines", views.PipelineViewSet, basename="pipeline")
router.register("stages", views.StageViewSet, basename="stage")
router.register("lost-reasons", views.LostReasonViewSet, basename="lost-reason")
router.register("organizations", views.OrganizationViewSet, basename="organization")
router.register("contacts", views.ContactViewSet, basename="contact")
router.register("leads", views.LeadViewSet, basename="lead")
router.register("deals", views.DealViewSet, basename="deal")
router.register("activities", views.ActivityViewSet, basename="activity")
router.register("webhooks", WebhookSubscriptionViewSet, basename="webhook")
router.register("events", EventViewSet, basename="event")
router.register("imports", imports.ImportJobViewSet, basename="import")

urlpatterns = router.urls
