"""Staff tools on merchant orders: refunds and disputes, each recorded in the audit log.

A dispute is a payer's complaint that staff open on a paid order (reason, amount at most what is
left to refund). Resolving it for the customer refunds the disputed amount (capped at what is
still refundable) through the ordinary refund service, with ``out_refund_no`` ``dispute-<id>``,
so a resolution retried after a crash refunds once; resolving it for the merchant moves nothing.
"""

from __future__ import annotations

import secrets

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from superapp.core.audit import audit_record
from superapp.core.errors import Conflict, NotFound, ValidationFailed

from .models import Dispute, MerchantOrder, MerchantRefund
from .orders import PAID_STATES, refund_create


def staff_refund(
    *, actor_id: int, order_id: int, amount: int | None = None, reason: str = "", ip: str | None = None
) -> MerchantRefund:
    """Staff refund part (``amount``) or the rest (None) of a paid order; audited."""
    order = MerchantOrder.objects.filter(pk=order_id).first()
    if order is None:
        raise NotFound()
    if amount is None:
        amount = order.amount - order.refunded_amount
        if amount <= 0:
            raise Conflict(_("Nothing is left to refund on this order."), code="refund_exceeds_paid")
    refund, _created = refund_create(
        merchant_id=order.merchant_id,
        order_id=order.id,
        out_refund_no=f"staff-{secrets.token_hex(10)}",
        amount=amount,
        reason=reason or "staff refund",
        initiated_by=MerchantRefund.Initiator.STAFF,
        actor_id=actor_id,
        ip=ip,
    )
    return refund


def dispute_open(
    *,
    actor_id: int,
    order_id: int,
    reason: str,
    amount: int | None = None,
    details: str = "",
    ip: str | None = None,
) -> Dispute:
    """Open a dispute on a paid order (at most one open per order); audited."""
    if reason not in Dispute.Reason.values:
        raise ValidationFailed(fields={"reason": [_("Not a known reason.")]})
    with transaction.atomic():
        order = MerchantOrder.objects.select_for_update().filter(pk=order_id).first()
        if order is None:
            raise NotFound()
        if order.status not in PAID_STATES:
            raise Conflict(_("Only a paid order can be disputed."), code="order_not_paid")
        left = order.amount - order.refunded_amount
        amount = left if amount is None else amount
        if type(amount) is not int or not 0 < amount <= left:
            raise ValidationFailed(
                fields={"amount": [_("Between 1 and what is left to refund (%(left)d).") % {"left": left}]},
                code="refund_exceeds_paid",
            )
        try:
            with transaction.atomic():
                dispute = Dispute.objects.create(
                    order=order, reason=reason, amount=amount, details=details, opened_by_id=actor_id
                )
        except IntegrityError:
            raise Conflict(
                _("This order already has an open dispute."), code="dispute_already_open"
            ) from None
        audit_record(
            actor_id=actor_id,
            action="payments.dispute.open",
            target=dispute,
            details={"order_id": order.id, "reason": reason, "amount": amount},
            ip=ip,
        )
    return dispute


def dispute_resolve(
    *, actor_id: int, dispute_id: int, for_customer: bool, note: str = "", ip: str | None = None
) -> Dispute:
    """Close an open dispute: for the customer (refund) or for the merchant (nothing moves); audited."""
    dispute = Dispute.objects.select_related("order").filter(pk=dispute_id).first()
    if dispute is None:
        raise NotFound()
    if dispute.status != Dispute.Status.OPEN:
        raise Conflict(_("This dispute is already resolved."), code="dispute_resolved")
    refund = None
    if for_customer:
        out_refund_no = f"dispute-{dispute.id}"
        refund = MerchantRefund.objects.filter(
            merchant_id=dispute.order.merchant_id, out_refund_no=out_refund_no
        ).first()
        if refund is None:
            left = dispute.order.amount - dispute.order.refunded_amount
            if left > 0:
                refund, _created = refund_create(
                    merchant_id=dispute.order.merchant_id,
                    order_id=dispute.order_id,
                    out_refund_no=out_refund_no,
                    amount=min(dispute.amount, left),
                    reason=f"dispute {dispute.id}: {dispute.reason}"[:80],
                    initiated_by=MerchantRefund.Initiator.DISPUTE,
                    actor_id=actor_id,
                    ip=ip,
                )
    with transaction.atomic():
        dispute = Dispute.objects.select_for_update().get(pk=dispute_id)
        if dispute.status != Dispute.Status.OPEN:
            raise Conflict(_("This dispute is already resolved."), code="dispute_resolved")
        dispute.status = Dispute.Status.WON_BY_CUSTOMER if for_customer else Dispute.Status.WON_BY_MERCHANT
        dispute.resolved_by_id = actor_id
        dispute.resolved_at = timezone.now()
        dispute.resolution_note = note[:200]
        dispute.refund = refund
        dispute.save(update_fields=["status", "resolved_by", "resolved_at", "resolution_note", "refund"])
        audit_record(
            actor_id=actor_id,
            action="payments.dispute.resolve",
            target=dispute,
            details={
                "for": "customer" if for_customer else "merchant",
                "refund_id": refund.id if refund else None,
                "refunded": refund.amount if refund else 0,
                "note": note[:200],
            },
            ip=ip,
        )
    return dispute
