from django.apps import AppConfig


class ForecastingConfig(AppConfig):
    name = "forecasting"
    verbose_name = "Forecasting and metrics"

    def ready(self) -> None:
        from forecasting import receivers

        receivers.connect()
