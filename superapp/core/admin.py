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
