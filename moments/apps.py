from django.apps import AppConfig


class MomentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "moments"
