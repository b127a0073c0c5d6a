"""Event types of the payments app and their payloads (plain JSON, one builder per shape).

These are the wallet's side. The chat's side is messaging's: a transfer or red packet is also a
message (``message.new`` of kind ``transfer`` / ``red_packet``, in the same transaction), a
transfer's bubble changes with ``message.updated``; ``payments.red_packet.grabbed`` (to the
grabber and the sender, with the conversation) is the "X opened your red packet" notice.
See docs/payments.md, "Transfers and red packets in chats".
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.conf import settings

from .models import (
    IdentityVerification,
    MerchantOrder,
    MerchantRefund,
    RedPacket,
    RedPacketGrab,
    SettlementBatch,
    TopUp,
    Transfer,
    Withdrawal,
)

TOP_UP_SUCCEEDED = "payments.topup.succeeded"
TRANSFER_CREATED = "payments.transfer.created"
TRANSFER_ACCEPTED = "payments.transfer.accepted"
TRANSFER_REFUNDED = "payments.transfer.refunded"
RED_PACKET_SENT = "payments.red_packet.sent"  # the sender (members get the chat message)
RED_PACKET_GRABBED = "payments.red_packet.grabbed"  # grabber and sender
RED_PACKET_REFUNDED = "payments.red_packet.refunded"  # sender: the unclaimed remainder came back
WITHDRAWAL_UPDATED = "payments.withdrawal.updated"  # the user: held, paid or failed (returned)

ALL_TYPES = (
    TOP_UP_SUCCEEDED,
    TRANSFER_CREATED,
    TRANSFER_ACCEPTED,
    TRANSFER_REFUNDED,
    RED_PACKET_SENT,
    RED_PACKET_GRABBED,
    RED_PACKET_REFUNDED,
    WITHDRAWAL_UPDATED,
)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def transfer_payload(transfer: Transfer) -> dict[str, Any]:
    return {
        "id": transfer.id,
        "sender_id": transfer.sender_id,
        "receiver_id": transfer.receiver_id,
        "amount": transfer.amount,
        "currency": transfer.currency,
        "note": transfer.note,
        "status": transfer.status,
        "created_at": _iso(transfer.created_at),
        "expires_at": _iso(transfer.expires_at),
        "resolved_at": _iso(transfer.resolved_at),
    }


def top_up_payload(top_up: TopUp, *, balance: int) -> dict[str, Any]:
    return {
        "id": top_up.id,
        "amount": top_up.amount,
        "currency": top_up.currency,
        "status": top_up.status,
        "balance": balance,
    }


def red_packet_payload(packet: RedPacket) -> dict[str, Any]:
    """What every member sees (never who got what: that is :func:`red_packet_detail`)."""
    return {
        "id": packet.id,
        "sender_id": packet.sender_id,
        "conversation_id": packet.conversation_id,
        "kind": packet.kind,
        "currency": packet.currency,
        "total_amount": packet.total_amount,
        "count": packet.count,
        "remaining_count": packet.remaining_count,
        "greeting": packet.greeting,
        "status": packet.status,
        "created_at": _iso(packet.created_at),
        "expires_at": _iso(packet.expires_at),
    }


def red_packet_grab_payload(packet: RedPacket, grab: RedPacketGrab) -> dict[str, Any]:
    return {
        "packet_id": packet.id,
        "conversation_id": packet.conversation_id,
        "user_id": grab.user_id,
        "amount": grab.amount,
        "currency": packet.currency,
        "remaining_count": packet.remaining_count,
        "status": packet.status,
    }


def red_packet_detail(packet: RedPacket, grabs: list[RedPacketGrab]) -> dict[str, Any]:
    """The packet with who got what; "best luck" (largest share, earliest on a tie) once all are taken."""
    best = None
    if packet.status == RedPacket.Status.FINISHED and packet.kind == RedPacket.Kind.LUCKY and grabs:
        best = max(grabs, key=lambda g: (g.amount, -g.id)).id
    return {
        **red_packet_payload(packet),
        "remaining_amount": packet.remaining_amount,
        "grabs": [
            {
                "user_id": g.user_id,
                "amount": g.amount,
                "grabbed_at": _iso(g.created_at),
                "best_luck": g.id == best,
            }
            for g in grabs
        ],
    }


def transfer_bubble(transfer: Transfer) -> dict[str, Any]:
    """The ``content`` of a transfer's chat message (``status`` changes with the transfer).

    ``receiver_id`` names who may accept it: in a group every member sees the bubble ("X
    transferred to Y") and only Y gets the accept and return buttons; one rule for direct chats
    too. Bubbles stored before it was added lack it: their receiver is the direct chat's peer.
    """
    return {
        "transfer_id": transfer.id,
        "receiver_id": transfer.receiver_id,
        "amount": transfer.amount,
        "currency": transfer.currency,
        "note": transfer.note,
        "status": transfer.status,
    }


def red_packet_bubble(packet: RedPacket) -> dict[str, Any]:
    """The ``content`` of a red packet's chat message: what the bubble shows, never the amount
    (as in WeChat: who got what comes from ``GET red-packets/<id>`` and the grab events).
    ``status``: ``active``, then ``finished`` (every share taken) or ``expired`` (24 h passed,
    the rest refunded), changed in place with ``message.updated``."""
    return {
        "red_packet_id": packet.id,
        "kind": packet.kind,
        "greeting": packet.greeting,
        "count": packet.count,
        "currency": packet.currency,
        "status": BUBBLE_STATUS[packet.status],
    }


# The bubble's word for each packet status: "refunded" is, to the members, an expired packet.
BUBBLE_STATUS = {"active": "active", "finished": "finished", "refunded": "expired"}


def withdrawal_payload(withdrawal: Withdrawal) -> dict[str, Any]:
    return {
        "id": withdrawal.id,
        "amount": withdrawal.amount,
        "currency": withdrawal.currency,
        "status": withdrawal.status,
        "failure_reason": withdrawal.failure_reason,
        "created_at": _iso(withdrawal.created_at),
        "resolved_at": _iso(withdrawal.resolved_at),
    }


# --- Payments II: merchants and their orders ----------------------------------------------------

ORDER_PAID = "payments.order.paid"  # the payer: a receipt
ORDER_CONFIRM_REQUIRED = "payments.order.confirm_required"  # the payer: a payment code over the no-PIN limit
ORDER_CLOSED = "payments.order.closed"  # the payer, when an order waiting for their PIN is closed
ORDER_REFUNDED = "payments.order.refunded"  # the payer: money came back
MERCHANT_PAYMENT_RECEIVED = "payments.merchant.payment_received"  # the owner ("received 12.50")
MERCHANT_SETTLED = "payments.merchant.settled"  # the owner: a day became withdrawable

ALL_TYPES += (
    ORDER_PAID,
    ORDER_CONFIRM_REQUIRED,
    ORDER_CLOSED,
    ORDER_REFUNDED,
    MERCHANT_PAYMENT_RECEIVED,
    MERCHANT_SETTLED,
)


def payer_ref(*, merchant_id: int, user_id: int | None) -> str | None:
    """The payer as one merchant sees them: stable for that merchant, meaningless to any other
    (WeChat's per-merchant ``openid``); merchants never learn user ids."""
    if user_id is None:
        return None
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"payments.payer:{merchant_id}:{user_id}".encode(), hashlib.sha256
    )
    return "u_" + digest.hexdigest()[:28]


def order_code_url(order: MerchantOrder) -> str:
    """What the dynamic QR code carries: the payer's app fetches the order by its code."""
    return f"{settings.PAYMENTS_PAY_URL}/order?code={order.code}"


def checkout_order_payload(order: MerchantOrder) -> dict[str, Any]:
    """An order as its payer's app shows it (``order.merchant`` is read: select it with the order)."""
    return {
        "id": order.id,
        "code": order.code,
        "merchant": {"id": order.merchant_id, "name": order.merchant.name},
        "trade_type": order.trade_type,
        "description": order.description,
        "amount": order.amount,
        "currency": order.currency,
        "status": order.status,
        "refunded_amount": order.refunded_amount,
        "created_at": _iso(order.created_at),
        "expire_at": _iso(order.expire_at),
        "paid_at": _iso(order.paid_at),
    }


def merchant_order_payload(order: MerchantOrder) -> dict[str, Any]:
    """An order as the merchant's server sees it (orders API answers and notifications)."""
    return {
        "id": order.id,
        "out_trade_no": order.out_trade_no,
        "trade_type": order.trade_type,
        "status": order.status,
        "description": order.description,
        "attach": order.attach,
        "amount": order.amount,
        "currency": order.currency,
        "fee": order.fee,
        "refunded_amount": order.refunded_amount,
        "payer": payer_ref(merchant_id=order.merchant_id, user_id=order.payer_id),
        "code_url": order_code_url(order),
        "created_at": _iso(order.created_at),
        "expire_at": _iso(order.expire_at),
        "paid_at": _iso(order.paid_at),
        "closed_at": _iso(order.closed_at),
        "settlement_date": order.settlement_date.isoformat() if order.settlement_date else None,
    }


def merchant_refund_payload(refund: MerchantRefund) -> dict[str, Any]:
    """A refund as the merchant's server sees it (``refund.order`` is read)."""
    return {
        "id": refund.id,
        "out_refund_no": refund.out_refund_no,
        "order_id": refund.order_id,
        "out_trade_no": refund.order.out_trade_no,
        "status": "succeeded",
        "amount": refund.amount,
        "fee_refund": refund.fee_refund,
        "currency": refund.order.currency,
        "reason": refund.reason,
        "source": refund.source,
        "initiated_by": refund.initiated_by,
        "created_at": _iso(refund.created_at),
    }


def order_refunded_payload(order: MerchantOrder, refund: MerchantRefund) -> dict[str, Any]:
    return {**checkout_order_payload(order), "refund": {"id": refund.id, "amount": refund.amount}}


def payment_received_payload(order: MerchantOrder) -> dict[str, Any]:
    return {
        "merchant_id": order.merchant_id,
        "order_id": order.id,
        "trade_type": order.trade_type,
        "description": order.description,
        "amount": order.amount,
        "fee": order.fee,
        "currency": order.currency,
        "paid_at": _iso(order.paid_at),
    }


def settlement_payload(batch: SettlementBatch) -> dict[str, Any]:
    return {
        "id": batch.id,
        "merchant_id": batch.merchant_id,
        "date": batch.date.isoformat(),
        "currency": batch.currency,
        "order_count": batch.order_count,
        "refund_count": batch.refund_count,
        "gross": batch.gross,
        "fees": batch.fees,
        "refunds": batch.refunds,
        "fee_refunds": batch.fee_refunds,
        "net": batch.net,
        "entry_id": batch.entry_id,
        "created_at": _iso(batch.created_at),
    }


# --- Real-name verification (payments/verification.py) -------------------------------------------

VERIFICATION_UPDATED = "payments.verification.updated"  # the user: pending, verified, failed...

ALL_TYPES += (VERIFICATION_UPDATED,)


def mask_legal_name(name: str) -> str:
    """A legal name as WeChat shows it: every character but the last hidden ("李明" -> "*明");
    a name of several words keeps only its last word ("Jenny Rosen" -> "***** Rosen")."""
    words = name.split()
    if not words:
        return ""
    if len(words) == 1:
        return "*" * (len(name) - 1) + name[-1:]
    return " ".join("*" * len(word) for word in words[:-1]) + " " + words[-1]


def mask_id_number(verification: IdentityVerification) -> str:
    """A resident ID as WeChat-like apps show it, all hidden but the check character
    ("*****************X"); nothing for other documents (none of their digits is kept)."""
    if verification.id_type == "cn_resident_id" and verification.id_number_check:
        return "*" * 17 + verification.id_number_check
    return ""


def verification_payload(verification: IdentityVerification, *, level: str) -> dict[str, Any]:
    """A verification as its owner sees it: the name and the ID number masked.
    ``level`` is the wallet's verification level after this change (it picks the limits)."""
    verified = verification.status in (
        IdentityVerification.Status.VERIFIED,
        IdentityVerification.Status.REVOKED,
    )
    return {
        "id": verification.id,
        "status": verification.status,
        "provider": verification.provider,
        "legal_name": mask_legal_name(verification.legal_name) if verified else "",
        "id_type": verification.id_type if verified else "",
        "id_number_masked": mask_id_number(verification) if verified else "",
        "failure_code": verification.failure_code,
        "failure_reason": verification.failure_reason,
        "created_at": _iso(verification.created_at),
        "resolved_at": _iso(verification.resolved_at),
        "verification_level": level,
    }
