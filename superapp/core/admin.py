"""Staff views of the event stream: read-only, and cheap on a table of millions of rows."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from .models import Event, UserStream


class ReadOnlyAdmin(admin.ModelAdmin):
    """Stored events are history: staff may read them, never edit them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class UserSearchMixin:
    """Search by user id or exact handle, with index lookups only.

    The default search would run ``icontains`` over a join (or cast ``user_id`` to text) for
    every row of the event table.
    """

    search_fields = ("user__handle",)
    search_help_text = _("A user id, or a handle (exact).")

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().lstrip("@").lower()
        if not term:
            return queryset, False
        if term.isdigit():
            return queryset.filter(user_id=int(term)), False
        return queryset.filter(user__handle=term), False


@admin.register(Event)
class EventAdmin(UserSearchMixin, ReadOnlyAdmin):
    list_display = ("id", "user", "seq", "type", "created_at")
    # No filter on ``type``: its choices would be a DISTINCT over the whole table on every page.
    # No date_hierarchy either (same reason); the date filter below costs nothing.
    list_filter = ("created_at",)
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    ordering = ("-id",)
    show_full_result_count = False


@admin.register(UserStream)
class UserStreamAdmin(UserSearchMixin, ReadOnlyAdmin):
    list_display = ("user", "last_seq")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    ordering = ("-user_id",)


# --- Push notifications ------------------------------------------------------------------------

from django.utils.translation import ngettext  # noqa: E402

from .push import services as push_services  # noqa: E402
from .push.models import PushDevice  # noqa: E402


@admin.register(PushDevice)
class PushDeviceAdmin(UserSearchMixin, admin.ModelAdmin):
    """Devices are registered by the apps; staff may look, disable or delete, never edit a token."""

    list_display = (
        "id",
        "user",
        "platform",
        "token_hint",
        "app_id",
        "last_seen_at",
        "disabled_at",
        "disabled_reason",
    )
    list_filter = ("platform", "disabled_at")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    ordering = ("-id",)
    fields = (
        "user",
        "platform",
        "token_hint",
        "session_id",
        "app_id",
        "locale",
        "created_at",
        "last_seen_at",
        "disabled_at",
        "disabled_reason",
    )
    readonly_fields = fields
    actions = ("disable_devices",)

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description=_("token"))
    def token_hint(self, obj):
        return obj.token_hint

    @admin.action(description=_("Stop pushing to the selected devices"))
    def disable_devices(self, request, queryset):
        count = push_services.devices_disable(
            device_ids=queryset.values_list("id", flat=True), reason="admin"
        )
        message = ngettext("%(count)d device disabled.", "%(count)d devices disabled.", count)
        self.message_user(request, message % {"count": count})
