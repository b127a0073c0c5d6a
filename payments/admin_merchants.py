"""Admin of Payments II: merchants, orders, refunds, settlements, disputes.

Money is read-only here as everywhere; staff levers go through the services and are recorded in
the audit log (``superapp.core.audit``): refund an order (all or part), open a dispute, resolve
it (for the customer: a refund; for the merchant: nothing moves), suspend a merchant or change
its fee rate. Each merchant and each settlement batch links to the merchant's settlement report
(CSV).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.dateparse import parse_date
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from superapp.core.audit import client_ip
from superapp.core.errors import ApplicationError

from . import disputes, merchants
from .admin import ReadOnlyAdmin
from .api.merchant_views import settlement_csv_response
from .models import (
    Dispute,
    Merchant,
    MerchantKey,
    MerchantOrder,
    MerchantPayout,
    MerchantRefund,
    PaymentCode,
    SettlementBatch,
)


def _report_link(merchant_id: int):
    url = reverse("admin:payments_merchant_settlements_csv", args=[merchant_id])
    return format_html('<a href="{}">{}</a>', url, _("Settlement report (CSV)"))


class MerchantStaffForm(forms.ModelForm):
    class Meta:
        model = Merchant
        fields = ["status", "fee_rate_bps"]


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    """Staff may change only the status and the fee rate, through the (audited) service."""

    form = MerchantStaffForm
    list_display = ["id", "name", "kind", "owner", "currency", "fee_rate_bps", "status", "created_at"]
    list_filter = ["status", "kind", "currency"]
    search_fields = ["name", "=external_ref", "owner__handle"]
    list_select_related = ["owner"]
    readonly_fields = [
        "owner",
        "kind",
        "external_ref",
        "name",
        "currency",
        "notify_url",
        "created_at",
        "report",
    ]
    fields = [
        "owner",
        "kind",
        "external_ref",
        "name",
        "currency",
        "notify_url",
        "status",
        "fee_rate_bps",
        "report",
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("settlements"))
    def report(self, obj):
        return _report_link(obj.pk) if obj.pk else ""

    def save_model(self, request, obj, form, change):
        merchants.merchant_staff_update(
            actor_id=request.user.pk,
            merchant_id=obj.pk,
            status=form.cleaned_data["status"],
            fee_rate_bps=form.cleaned_data["fee_rate_bps"],
            ip=client_ip(request),
        )

    def get_urls(self):
        return [
            path(
                "<int:merchant_id>/settlements.csv",
                self.admin_site.admin_view(self.settlements_csv),
                name="payments_merchant_settlements_csv",
            ),
            *super().get_urls(),
        ]

    def settlements_csv(self, request, merchant_id: int):
        if not self.has_view_permission(request):
            raise PermissionDenied
        merchant = get_object_or_404(Merchant, pk=merchant_id)
        try:
            since, until = (parse_date(request.GET.get(k, "")) for k in ("since", "until"))
        except ValueError:  # well formed, not a date: the whole report
            since = until = None
        return settlement_csv_response(merchant_id=merchant.pk, since=since, until=until)


@admin.register(MerchantKey)
class MerchantKeyAdmin(ReadOnlyAdmin):
    list_display = ["key_id", "merchant", "created_at", "expires_at"]
    search_fields = ["=key_id"]
    exclude = ["secret_encrypted"]


class StaffRefundForm(forms.Form):
    amount = forms.IntegerField(
        min_value=1, required=False, help_text=_("Minor units (fen). Empty: everything not refunded yet.")
    )
    reason = forms.CharField(max_length=80, required=False)
    # Drawn when the form is shown and carried through the submission: the refund's
    # out_refund_no, so the same form submitted twice (double click, reload, back) refunds once.
    out_refund_no = forms.RegexField(regex=disputes.STAFF_REFUND_NO_RE, widget=forms.HiddenInput)


class DisputeOpenForm(forms.Form):
    reason = forms.ChoiceField(choices=Dispute.Reason.choices)
    amount = forms.IntegerField(
        min_value=1, required=False, help_text=_("Empty: everything not refunded yet.")
    )
    details = forms.CharField(widget=forms.Textarea, required=False)


class DisputeResolveForm(forms.Form):
    decision = forms.ChoiceField(
        choices=[
            ("customer", _("For the customer: refund the disputed amount")),
            ("merchant", _("For the merchant")),
        ]
    )
    note = forms.CharField(max_length=200, required=False)


class StaffActionMixin:
    """A form page for one object whose valid submission calls a service (errors shown inline)."""

    def _staff_form(self, request, obj, form_class, title, summary, act, initial=None):
        form = form_class(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            try:
                message = act(form.cleaned_data)
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(request, message, messages.SUCCESS)
                return redirect(reverse(f"admin:payments_{obj._meta.model_name}_change", args=[obj.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": obj,
            "title": title,
            "summary": summary,
            "form": form,
        }
        return TemplateResponse(request, "admin/payments/staff_action.html", context)


class RefundInline(admin.TabularInline):
    model = MerchantRefund
    extra = 0
    can_delete = False
    fields = ["out_refund_no", "amount", "fee_refund", "source", "initiated_by", "reason", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(MerchantOrder)
class MerchantOrderAdmin(StaffActionMixin, ReadOnlyAdmin):
    list_display = [
        "id",
        "merchant",
        "out_trade_no",
        "trade_type",
        "amount",
        "refunded_amount",
        "currency",
        "status",
        "created_at",
        "paid_at",
    ]
    list_filter = ["status", "trade_type", "currency"]
    search_fields = ["=out_trade_no", "=id"]
    list_select_related = ["merchant"]
    readonly_fields = ["staff_actions"]
    exclude = ["request_hash", "code"]
    inlines = [RefundInline]

    def has_staff_permission(self, request) -> bool:
        return request.user.has_perm("payments.change_merchantorder")

    @admin.display(description=_("staff actions"))
    def staff_actions(self, obj):
        if obj.status not in (MerchantOrder.Status.PAID, MerchantOrder.Status.REFUNDED):
            return "-"
        return format_html(
            '<a href="{}">{}</a> · <a href="{}">{}</a>',
            reverse("admin:payments_merchantorder_refund", args=[obj.pk]),
            _("Refund"),
            reverse("admin:payments_merchantorder_dispute", args=[obj.pk]),
            _("Open a dispute"),
        )

    def get_urls(self):
        return [
            path(
                "<int:order_id>/refund/",
                self.admin_site.admin_view(self.refund_view),
                name="payments_merchantorder_refund",
            ),
            path(
                "<int:order_id>/dispute/",
                self.admin_site.admin_view(self.dispute_view),
                name="payments_merchantorder_dispute",
            ),
            *super().get_urls(),
        ]

    def refund_view(self, request, order_id: int):
        if not self.has_staff_permission(request):
            raise PermissionDenied
        order = get_object_or_404(MerchantOrder, pk=order_id)

        def act(data):
            refund = disputes.staff_refund(
                actor_id=request.user.pk,
                order_id=order.pk,
                amount=data["amount"],
                reason=data["reason"],
                out_refund_no=data["out_refund_no"],
                ip=client_ip(request),
            )
            return _("Refunded %(amount)d %(currency)s.") % {
                "amount": refund.amount,
                "currency": order.currency,
            }

        left = order.amount - order.refunded_amount
        summary = _("Paid %(amount)d, refunded %(refunded)d, left %(left)d %(currency)s.") % {
            "amount": order.amount,
            "refunded": order.refunded_amount,
            "left": left,
            "currency": order.currency,
        }
        return self._staff_form(
            request,
            order,
            StaffRefundForm,
            _("Refund"),
            summary,
            act,
            initial={"out_refund_no": disputes.staff_refund_no()},
        )

    def dispute_view(self, request, order_id: int):
        if not self.has_staff_permission(request):
            raise PermissionDenied
        order = get_object_or_404(MerchantOrder, pk=order_id)

        def act(data):
            dispute = disputes.dispute_open(
                actor_id=request.user.pk,
                order_id=order.pk,
                reason=data["reason"],
                amount=data["amount"],
                details=data["details"],
                ip=client_ip(request),
            )
            return _("Dispute %(id)d opened.") % {"id": dispute.pk}

        return self._staff_form(request, order, DisputeOpenForm, _("Open a dispute"), str(order), act)


@admin.register(MerchantRefund)
class MerchantRefundAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "merchant",
        "order",
        "out_refund_no",
        "amount",
        "fee_refund",
        "source",
        "initiated_by",
        "created_at",
    ]
    list_filter = ["source", "initiated_by"]
    search_fields = ["=out_refund_no"]
    list_select_related = ["merchant", "order"]
    exclude = ["request_hash"]


@admin.register(PaymentCode)
class PaymentCodeAdmin(ReadOnlyAdmin):
    list_display = ["id", "user", "created_at", "expires_at", "used_at", "order"]
    exclude = ["digest"]


@admin.register(SettlementBatch)
class SettlementBatchAdmin(ReadOnlyAdmin):
    list_display = [
        "date",
        "merchant",
        "currency",
        "order_count",
        "gross",
        "fees",
        "refunds",
        "net",
        "report",
    ]
    list_filter = ["date", "currency"]
    list_select_related = ["merchant"]
    date_hierarchy = "date"

    @admin.display(description=_("report"))
    def report(self, obj):
        return _report_link(obj.merchant_id)


@admin.register(MerchantPayout)
class MerchantPayoutAdmin(ReadOnlyAdmin):
    list_display = ["id", "merchant", "amount", "currency", "requested_by", "created_at"]


@admin.register(Dispute)
class DisputeAdmin(StaffActionMixin, ReadOnlyAdmin):
    list_display = [
        "id",
        "order",
        "reason",
        "amount",
        "status",
        "opened_by",
        "resolved_by",
        "created_at",
        "resolved_at",
    ]
    list_filter = ["status", "reason"]
    list_select_related = ["order", "opened_by", "resolved_by"]
    readonly_fields = ["resolve"]

    @admin.display(description=_("resolve"))
    def resolve(self, obj):
        if obj.status not in (Dispute.Status.OPEN, Dispute.Status.RESOLVING_CUSTOMER):
            return "-"
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:payments_dispute_resolve", args=[obj.pk]), _("Resolve")
        )

    def get_urls(self):
        return [
            path(
                "<int:dispute_id>/resolve/",
                self.admin_site.admin_view(self.resolve_view),
                name="payments_dispute_resolve",
            ),
            *super().get_urls(),
        ]

    def resolve_view(self, request, dispute_id: int):
        if not request.user.has_perm("payments.change_dispute"):
            raise PermissionDenied
        dispute = get_object_or_404(Dispute, pk=dispute_id)

        def act(data):
            resolved = disputes.dispute_resolve(
                actor_id=request.user.pk,
                dispute_id=dispute.pk,
                for_customer=data["decision"] == "customer",
                note=data["note"],
                ip=client_ip(request),
            )
            return _("Dispute %(id)d resolved (%(status)s).") % {"id": resolved.pk, "status": resolved.status}

        summary = _("%(reason)s, %(amount)d on order %(order)s.") % {
            "reason": dispute.get_reason_display(),
            "amount": dispute.amount,
            "order": dispute.order_id,
        }
        return self._staff_form(request, dispute, DisputeResolveForm, _("Resolve the dispute"), summary, act)
