from django.apps import AppConfig


class MiniprogramsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "miniprograms"
