from django.apps import AppConfig


class CoreConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "superapp.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from . import metrics, realtime  # noqa: F401  (registers signal handlers and frame handlers)
