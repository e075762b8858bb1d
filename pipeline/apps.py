from django.apps import AppConfig


class PipelineConfig(AppConfig):
    name = "pipeline"
    verbose_name = "Sales pipeline"

    def ready(self) -> None:
        # Webhook events follow the domain signals; importing the receivers connects them (and registers the tasks).
        from pipeline.webhooks import receivers, tasks  # noqa: F401
