from django.apps import AppConfig


class GovservicesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "govservices"
