"""Event types of the payments app and their payloads (plain JSON, one builder per shape).

The chat side (messaging) will render a transfer as a message: it should listen for
``payments.transfer.created`` (sender and receiver both get it) and update the bubble on
``payments.transfer.accepted`` / ``payments.transfer.refunded``. See docs/payments.md.
"""

from __future__ import annotations

from typing import Any

from .models import RedPacket, RedPacketGrab, TopUp, Transfer, Withdrawal

TOP_UP_SUCCEEDED = "payments.topup.succeeded"
TRANSFER_CREATED = "payments.transfer.created"
TRANSFER_ACCEPTED = "payments.transfer.accepted"
TRANSFER_REFUNDED = "payments.transfer.refunded"
RED_PACKET_SENT = "payments.red_packet.sent"  # sender and audience
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
