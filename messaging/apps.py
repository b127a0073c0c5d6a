from django.apps import AppConfig


class MessagingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "messaging"

    def ready(self) -> None:
        # WebSocket frames and socket hooks; Celery tasks.
        from . import realtime, tasks  # noqa: F401
