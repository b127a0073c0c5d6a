"""Thin Celery tasks of the payments app (safe to run twice)."""

from celery import shared_task

from superapp.core.idempotency import idempotency_keys_purge

from . import orders, payment_codes, red_packets, services, settlement, verification
from .ledger import ledger_reconcile
from .providers import ProviderUnavailable


@shared_task(name="payments.reconcile_ledger", ignore_result=True)
def reconcile_ledger() -> bool:
    return ledger_reconcile().ok


@shared_task(name="payments.refund_expired_transfers", ignore_result=True)
def refund_expired_transfers() -> int:
    return services.transfers_refund_expired()


@shared_task(name="payments.purge_idempotency_keys", ignore_result=True)
def purge_idempotency_keys() -> int:
    return idempotency_keys_purge()


@shared_task(name="payments.refund_expired_red_packets", ignore_result=True)
def refund_expired_red_packets() -> int:
    return red_packets.red_packets_refund_expired()


@shared_task(
    name="payments.submit_withdrawal",
    ignore_result=True,
    autoretry_for=(ProviderUnavailable,),
    retry_backoff=True,
    max_retries=8,
)
def submit_withdrawal(withdrawal_id: int) -> None:
    services.withdrawal_submit(withdrawal_id=withdrawal_id)


@shared_task(name="payments.resubmit_stale_withdrawals", ignore_result=True)
def resubmit_stale_withdrawals() -> int:
    return services.withdrawals_resubmit_stale()


@shared_task(
    name="payments.complete_verification",
    ignore_result=True,
    autoretry_for=(ProviderUnavailable,),
    retry_backoff=True,
    max_retries=8,
)
def complete_verification(verification_id: int) -> None:
    verification.verification_complete(verification_id=verification_id)


@shared_task(
    name="payments.redact_verification",
    ignore_result=True,
    autoretry_for=(ProviderUnavailable,),
    retry_backoff=True,
    max_retries=8,
)
def redact_verification(verification_id: int) -> None:
    verification.verification_redact(verification_id=verification_id)


@shared_task(name="payments.complete_stale_verifications", ignore_result=True)
def complete_stale_verifications() -> int:
    return verification.verifications_complete_stale()


# --- Payments II ---------------------------------------------------------------------------------


@shared_task(name="payments.settle_merchants", ignore_result=True)
def settle_merchants() -> int:
    return settlement.settlements_run()


@shared_task(name="payments.close_expired_orders", ignore_result=True)
def close_expired_orders() -> int:
    """Close unpaid orders past their expiry; forget payment codes expired a day ago."""
    return orders.orders_close_expired() + payment_codes.payment_codes_purge()
