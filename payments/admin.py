"""Admin: the ledger is read-only; the latest reconciliation's mismatches are shown on top."""

from django.contrib import admin, messages

from . import services
from .models import (
    JournalEntry,
    LedgerAccount,
    Posting,
    ProviderEvent,
    ReconciliationRun,
    RedPacket,
    RedPacketGrab,
    TopUp,
    Transfer,
    WalletSettings,
    Withdrawal,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Money is changed only by services; the admin only looks."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReconciliationWarningMixin:
    def changelist_view(self, request, extra_context=None):
        latest = ReconciliationRun.objects.order_by("-id").first()
        if latest is not None and not latest.ok:
            messages.error(
                request,
                f"The last reconciliation ({latest.started_at:%Y-%m-%d %H:%M}) found "
                f"{len(latest.mismatches)} mismatch(es): see Reconciliation runs.",
            )
        return super().changelist_view(request, extra_context)


class PostingInline(admin.TabularInline):
    model = Posting
    extra = 0
    can_delete = False
    readonly_fields = ["account", "amount", "currency"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReconciliationWarningMixin, ReadOnlyAdmin):
    list_display = ["id", "kind", "owner", "currency", "balance", "created_at"]
    list_filter = ["kind", "currency"]
    search_fields = ["owner__handle"]
    list_select_related = ["owner"]


@admin.register(JournalEntry)
class JournalEntryAdmin(ReconciliationWarningMixin, ReadOnlyAdmin):
    list_display = ["id", "kind", "reference", "memo", "created_at"]
    list_filter = ["kind"]
    search_fields = ["reference"]
    inlines = [PostingInline]


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "started_at", "ok", "accounts_checked", "entries_checked"]
    list_filter = ["ok"]


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = ["id", "sender", "receiver", "amount", "currency", "status", "created_at", "expires_at"]
    list_filter = ["status"]
    list_select_related = ["sender", "receiver"]


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = ["id", "user", "amount", "currency", "provider", "status", "created_at"]
    list_filter = ["status", "provider"]


@admin.register(WalletSettings)
class WalletSettingsAdmin(ReadOnlyAdmin):
    list_display = ["user", "verification_level", "pin_locked_until", "auto_accept_transfers"]
    list_filter = ["verification_level"]
    exclude = ["pin_hash"]
    actions = ["mark_verified", "mark_unverified"]

    @admin.action(description="Mark as real-name verified (higher limits)")
    def mark_verified(self, request, queryset):
        for user_id in queryset.values_list("user_id", flat=True):
            services.wallet_verification_level_set(user_id=user_id, level=WalletSettings.Level.VERIFIED)

    @admin.action(description="Mark as unverified")
    def mark_unverified(self, request, queryset):
        for user_id in queryset.values_list("user_id", flat=True):
            services.wallet_verification_level_set(user_id=user_id, level=WalletSettings.Level.UNVERIFIED)


class RedPacketGrabInline(admin.TabularInline):
    model = RedPacketGrab
    extra = 0
    can_delete = False
    readonly_fields = ["user", "amount", "created_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(RedPacket)
class RedPacketAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "sender",
        "conversation_id",
        "kind",
        "total_amount",
        "count",
        "remaining_count",
        "status",
        "expires_at",
    ]
    list_filter = ["kind", "status"]
    inlines = [RedPacketGrabInline]


@admin.register(Withdrawal)
class WithdrawalAdmin(ReadOnlyAdmin):
    list_display = ["id", "user", "amount", "currency", "provider", "status", "created_at", "resolved_at"]
    list_filter = ["status", "provider"]


@admin.register(ProviderEvent)
class ProviderEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "provider", "event_id", "type", "outcome", "received_at"]
    list_filter = ["provider", "type", "outcome"]
    search_fields = ["event_id"]


# Payments II: merchants, orders, refunds, settlements, disputes (their own module).
from . import admin_merchants  # noqa: E402, F401
