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


# --- Outbound webhooks ---------------------------------------------------------------------------

import json  # noqa: E402

from django.db import transaction  # noqa: E402
from django.utils.html import format_html  # noqa: E402

from . import audit, webhooks  # noqa: E402
from .errors import ApplicationError  # noqa: E402
from .models import AuditLogEntry, WebhookAttempt, WebhookDelivery  # noqa: E402


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    ordering = ("number",)
    fields = ("number", "started_at", "duration_ms", "status_code", "error", "response_excerpt")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """Deliveries are history plus one staff lever, "retry now" (through the service)."""

    list_display = (
        "public_id",
        "event_type",
        "receiver",
        "status",
        "attempt_count",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "event_type", "created_at")
    search_fields = ("=public_id", "=dedup_key", "url")
    search_help_text = _("An event id or dedup key (exact), or part of the URL.")
    ordering = ("-id",)
    show_full_result_count = False
    # Never the secret.
    fields = (
        "public_id",
        "dedup_key",
        "event_type",
        "url",
        "status",
        "created_at",
        "attempt_count",
        "last_attempt_at",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "locked_until",
        "delivered_at",
        "pretty_body",
    )
    readonly_fields = fields
    inlines = (WebhookAttemptInline,)
    actions = ("retry_now",)

    def has_retry_permission(self, request):
        return request.user.has_perm("core.change_webhookdelivery")

    @admin.display(description=_("receiver"))
    def receiver(self, obj):
        return webhooks.redacted_url(obj.url)

    @admin.display(description=_("body"))
    def pretty_body(self, obj):
        try:
            text = json.dumps(json.loads(obj.body), indent=2, ensure_ascii=False)
        except ValueError:
            text = obj.body
        return format_html("<pre>{}</pre>", text)

    @admin.action(description=_("Retry the selected webhooks now"), permissions=["retry"])
    def retry_now(self, request, queryset):
        done = skipped = 0
        for delivery_id in queryset.values_list("id", flat=True):
            try:
                with transaction.atomic():
                    delivery = webhooks.webhook_retry_now(delivery_id=delivery_id)
                    audit.audit_admin_action(request, "webhooks.retry_now", delivery)
                done += 1
            except ApplicationError:
                skipped += 1
        message = ngettext("%(count)d webhook queued.", "%(count)d webhooks queued.", done)
        self.message_user(request, message % {"count": done})
        if skipped:
            message = ngettext(
                "%(count)d webhook skipped (already delivered).",
                "%(count)d webhooks skipped (already delivered).",
                skipped,
            )
            self.message_user(request, message % {"count": skipped}, level="warning")


# --- Audit log -------------------------------------------------------------------------------------


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(ReadOnlyAdmin):
    """Append-only: staff read it; nobody adds, changes or deletes (a trigger backs this up)."""

    list_display = ("created_at", "actor_username", "action", "target_content_type", "target_repr", "ip")
    list_filter = ("action", "created_at", "target_content_type")
    list_select_related = ("target_content_type",)
    search_fields = ("action", "actor_username", "target_repr", "=target_object_id")
    search_help_text = _("An action, a username, or the target (its text, or its id exactly).")
    ordering = ("-created_at", "-id")
    fields = (
        "created_at",
        "actor",
        "actor_username",
        "action",
        "target_content_type",
        "target_object_id",
        "target_repr",
        "details",
        "ip",
    )
    readonly_fields = fields
    show_full_result_count = False
