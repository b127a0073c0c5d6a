"""Staff tools on merchant orders: refunds and disputes, each recorded in the audit log.

A dispute is a payer's complaint that staff open on a paid order (reason, amount at most what is
left to refund). Resolving it for the customer refunds the disputed amount (capped at what is
still refundable) through the ordinary refund service, with ``out_refund_no`` ``dispute-<id>``,
so a resolution retried after a crash refunds once; resolving it for the merchant moves nothing.
The dispute is locked and marked ``resolving_customer`` (committed) before the refund, so two
staff deciding at once cannot both refund and record "won by the merchant"
(:func:`dispute_resolve`). While a dispute is open or being resolved, its amount is held back
from the merchant's payouts (``merchants.merchant_disputed_amount``).

Staff refunds are idempotent on an ``out_refund_no`` drawn when the admin form is shown
(:func:`staff_refund_no`): the same form submitted twice refunds once.
"""

from __future__ import annotations

import re
import secrets

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from superapp.core.audit import audit_record
from superapp.core.errors import Conflict, NotFound, ValidationFailed

from .models import Dispute, MerchantOrder, MerchantRefund
from .orders import PAID_STATES, refund_create

STAFF_REFUND_NO_RE = re.compile(r"staff-[0-9a-f]{20}")


def staff_refund_no() -> str:
    """A fresh ``out_refund_no`` for a staff refund, drawn when the refund form is shown."""
    return f"staff-{secrets.token_hex(10)}"


def staff_refund(
    *,
    actor_id: int,
    order_id: int,
    out_refund_no: str,
    amount: int | None = None,
    reason: str = "",
    ip: str | None = None,
) -> MerchantRefund:
    """Staff refund part (``amount``) or the rest (None) of a paid order; audited.

    Idempotent on ``out_refund_no`` (from :func:`staff_refund_no`, drawn when the form was
    shown): the same form submitted again returns the first refund and moves nothing.
    """
    if not isinstance(out_refund_no, str) or not STAFF_REFUND_NO_RE.fullmatch(out_refund_no):
        raise ValidationFailed(fields={"out_refund_no": [_("Reload the form and submit it again.")]})
    order = MerchantOrder.objects.filter(pk=order_id).first()
    if order is None:
        raise NotFound()
    done = MerchantRefund.objects.filter(merchant_id=order.merchant_id, out_refund_no=out_refund_no).first()
    if done is not None and done.order_id == order.id and amount in (None, done.amount):
        return done  # a resubmission ("the rest" included: it meant the same refund)
    if amount is None:
        amount = order.amount - order.refunded_amount
        if amount <= 0:
            raise Conflict(_("Nothing is left to refund on this order."), code="refund_exceeds_paid")
    refund, _created = refund_create(
        merchant_id=order.merchant_id,
        order_id=order.id,
        out_refund_no=out_refund_no,
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
    """Close an open dispute: for the customer (refund) or for the merchant (nothing moves); audited.

    For the customer, in three steps, because the refund is a money transaction of its own
    (``money_atomic`` is durable): (1) under the dispute's row lock, ``open`` becomes
    ``resolving_customer`` and commits, so a concurrent "for the merchant" is refused from then
    on (409 ``dispute_resolving``); (2) the refund, ``out_refund_no`` ``dispute-<id>``, which is
    idempotent; (3) under the lock again, ``won_by_customer``. A resolution that died after (1)
    or (2) is finished by resolving it for the customer again: it refunds at most once.
    For the merchant: one transaction, only from ``open``.

    Raises:
        Conflict ``dispute_resolved``: already resolved.
        Conflict ``dispute_resolving``: being resolved for the customer (for the merchant only).
    """
    with transaction.atomic():
        dispute = Dispute.objects.select_for_update().filter(pk=dispute_id).first()
        if dispute is None:
            raise NotFound()
        if dispute.status in (Dispute.Status.WON_BY_CUSTOMER, Dispute.Status.WON_BY_MERCHANT):
            raise Conflict(_("This dispute is already resolved."), code="dispute_resolved")
        if not for_customer:
            if dispute.status != Dispute.Status.OPEN:
                raise Conflict(
                    _("This dispute is being resolved for the customer (the refund is under way)."),
                    code="dispute_resolving",
                )
            return _dispute_finish(
                dispute,
                status=Dispute.Status.WON_BY_MERCHANT,
                refund=None,
                actor_id=actor_id,
                note=note,
                ip=ip,
            )
        if dispute.status == Dispute.Status.OPEN:
            dispute.status = Dispute.Status.RESOLVING_CUSTOMER
            dispute.save(update_fields=["status"])

    order = MerchantOrder.objects.get(pk=dispute.order_id)
    out_refund_no = f"dispute-{dispute.id}"
    refund = MerchantRefund.objects.filter(merchant_id=order.merchant_id, out_refund_no=out_refund_no).first()
    if refund is None:
        left = order.amount - order.refunded_amount
        if left > 0:
            refund, _created = refund_create(
                merchant_id=order.merchant_id,
                order_id=order.id,
                out_refund_no=out_refund_no,
                amount=min(dispute.amount, left),
                reason=f"dispute {dispute.id}: {dispute.reason}"[:80],
                initiated_by=MerchantRefund.Initiator.DISPUTE,
                actor_id=actor_id,
                ip=ip,
            )
    with transaction.atomic():
        dispute = Dispute.objects.select_for_update().get(pk=dispute_id)
        if dispute.status != Dispute.Status.RESOLVING_CUSTOMER:  # a concurrent resolution finished it
            raise Conflict(_("This dispute is already resolved."), code="dispute_resolved")
        return _dispute_finish(
            dispute, status=Dispute.Status.WON_BY_CUSTOMER, refund=refund, actor_id=actor_id, note=note, ip=ip
        )


def _dispute_finish(
    dispute: Dispute,
    *,
    status: str,
    refund: MerchantRefund | None,
    actor_id: int,
    note: str,
    ip: str | None,
) -> Dispute:
    """Record the resolution. Caller holds the dispute's row lock in a transaction."""
    dispute.status = status
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
            "for": "customer" if status == Dispute.Status.WON_BY_CUSTOMER else "merchant",
            "refund_id": refund.id if refund else None,
            "refunded": refund.amount if refund else 0,
            "note": note[:200],
        },
        ip=ip,
    )
    return dispute
