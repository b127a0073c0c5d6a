"""Admin: the ledger is read-only; the latest reconciliation's mismatches are shown on top."""

from django.contrib import admin, messages

from superapp.core.audit import client_ip
from superapp.core.errors import ApplicationError

from . import events, services, verification
from .models import (
    IdentityVerification,
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
        """A wallet verified by the real-name flow is revoked through it (the identity freed, the
        user may verify again: an unbind); one marked verified by hand only changes its level."""
        for user_id in queryset.values_list("user_id", flat=True):
            verified = (
                IdentityVerification.objects.filter(
                    user_id=user_id, status=IdentityVerification.Status.VERIFIED
                )
                .values_list("id", flat=True)
                .first()
            )
            if verified is None:
                services.wallet_verification_level_set(user_id=user_id, level=WalletSettings.Level.UNVERIFIED)
                continue
            try:
                verification.verification_revoke(
                    verification_id=verified,
                    actor_id=request.user.pk,
                    reason="admin: mark unverified",
                    ip=client_ip(request),
                )
            except ApplicationError as exc:  # revoked meanwhile by someone else
                messages.warning(request, f"user {user_id}: {exc.message}")


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


@admin.register(IdentityVerification)
class IdentityVerificationAdmin(ReadOnlyAdmin):
    """Real-name verifications, read-only; staff may revoke one, freeing the identity (unbind)
    or blocking the user and the identity until lifted (fraud); audit-logged. Neither the list
    nor the detail page shows the full legal name or the ID number's hash."""

    list_display = [
        "id",
        "user",
        "provider",
        "status",
        "masked_name",
        "id_type",
        "masked_id_number",
        "failure_code",
        "blocks_user",
        "created_at",
        "resolved_at",
        "redacted_at",
    ]
    list_filter = ["status", "provider", "failure_code", "blocks_user"]
    search_fields = ["user__handle", "provider_ref"]
    list_select_related = ["user"]
    exclude = ["legal_name", "id_number_hash", "id_number_check"]
    readonly_fields = ["masked_name", "masked_id_number"]
    actions = ["revoke", "revoke_and_block", "lift_block"]

    @admin.display(description="legal name")
    def masked_name(self, obj):
        return events.mask_legal_name(obj.legal_name)

    @admin.display(description="ID number")
    def masked_id_number(self, obj):
        return events.mask_id_number(obj)

    def has_revoke_permission(self, request):
        return request.user.has_perm("payments.change_identityverification")

    def _each(self, request, queryset, done_message, job):
        done = 0
        for verification_id in queryset.order_by("id").values_list("id", flat=True):
            try:
                job(verification_id)
                done += 1
            except ApplicationError as exc:
                messages.warning(request, f"verification {verification_id}: {exc.message}")
        if done:
            messages.success(request, f"{done} {done_message}")

    def _revoke(self, request, queryset, *, block: bool):
        self._each(
            request,
            queryset,
            "verification(s) revoked.",
            lambda verification_id: verification.verification_revoke(
                verification_id=verification_id,
                actor_id=request.user.pk,
                reason="admin: revoke and block" if block else "admin: revoke",
                block=block,
                ip=client_ip(request),
            ),
        )

    @admin.action(description="Revoke (unbind: the user may verify again)", permissions=["revoke"])
    def revoke(self, request, queryset):
        self._revoke(request, queryset, block=False)

    @admin.action(
        description="Revoke and block (fraud: the user and the identity cannot verify until lifted)",
        permissions=["revoke"],
    )
    def revoke_and_block(self, request, queryset):
        self._revoke(request, queryset, block=True)

    @admin.action(
        description="Lift the block (the user and the identity may verify again)", permissions=["revoke"]
    )
    def lift_block(self, request, queryset):
        self._each(
            request,
            queryset,
            "block(s) lifted.",
            lambda verification_id: verification.verification_block_lift(
                verification_id=verification_id, actor_id=request.user.pk, ip=client_ip(request)
            ),
        )


# Payments II: merchants, orders, refunds, settlements, disputes (their own module).
from . import admin_merchants  # noqa: E402, F401
