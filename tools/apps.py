from django.apps import AppConfig


class ToolsConfig(AppConfig):
    # An app only so that Django finds the generators' management commands (seed_demo, generate_dataset); it has
    # no models, and no other app imports it.
    name = "tools"
    verbose_name = "Tools about the product"
