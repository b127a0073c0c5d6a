from django.contrib import admin

from .models import Event, UserStream


class ReadOnlyAdmin(admin.ModelAdmin):
    """Stored events are history: staff may read them, never edit them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "seq", "type", "created_at")
    list_filter = ("type", "created_at")
    search_fields = ("=user__id", "user__handle", "type")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    date_hierarchy = "created_at"


@admin.register(UserStream)
class UserStreamAdmin(ReadOnlyAdmin):
    list_display = ("user", "last_seq")
    search_fields = ("=user__id", "user__handle")
    list_select_related = ("user",)
