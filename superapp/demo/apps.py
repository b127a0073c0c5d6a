from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Demo data for ``make run`` (``manage.py seed_demo``): it seeds every app through its services."""

    name = "superapp.demo"
    label = "demo"
