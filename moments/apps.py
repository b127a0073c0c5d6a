from django.apps import AppConfig


class MomentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "moments"

    def ready(self) -> None:
        # accounts' hooks module itself (its services package would import its tasks).
        from accounts.services import hooks as account_hooks

        from . import feed_cache

        # Friendships and blocks decide whose posts, likes and comments a viewer sees; a public
        # profile is shown with every post, like and comment of its owner.
        account_hooks.on_contacts_changed(feed_cache.contacts_changed)
        account_hooks.on_profile_changed(feed_cache.profile_changed)
