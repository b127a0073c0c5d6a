from django.apps import AppConfig


class OfficialAccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "official_accounts"
