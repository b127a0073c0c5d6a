"""Real-name verification: the writes (services) of a user's proof of their legal identity.

A user starts a verification (``verification_start``); the provider verifies at once (sandbox:
the typed name and a mainland resident ID number) or later (Stripe Identity: the app opens the
session, and the signed ``identity.verification_session.*`` webhooks say how it ended, handled
by ``services.provider_event_handle`` through :func:`verification_event_apply`; a lost webhook is
made up for by polling the session, :func:`verification_refresh`). On success the wallet's level
becomes ``verified`` through ``services.wallet_verification_level_set`` (higher limits), the
legal name is kept (shown masked), and of the ID number only a keyed hash (under the dedicated
``PAYMENTS_IDENTITY_KEY``) and, for a resident ID, its check character. Staff may revoke a
verification (:func:`verification_revoke`), freeing the identity or blocking it and the user
until they lift the block (:func:`verification_block_lift`).

The provider's copy (Stripe keeps the document images, the selfie and what it read, for as long
as it is not told otherwise) is deleted once an attempt has ended: verified and its outputs
stored, failed, canceled, superseded or revoked (:func:`verification_redact`, a task queued
after the commit that ended it; the sweeper asks again for any the provider did not take).

Rules held by the database, not by a check-then-act: at most one ``pending`` and one
``verified`` verification per user (partial unique indexes); an identity verifies at most
``PAYMENTS_IDENTITY_MAX_ACCOUNTS`` accounts, counted under the lock of its
:class:`VerifiedIdentity` row (inserted on first use with ``ON CONFLICT DO NOTHING``).

Lock order inside one transaction: the user's ``WalletSettings`` row (as payments take it), then
the verification row, then the identity row, then event stream heads (``publish``, last). The
webhook's transaction takes only the verification row and the heads; providers are called
outside any transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from superapp.core import audit
from superapp.core import events as core_events
from superapp.core.errors import ApplicationError, Conflict, Forbidden, NotFound, ValidationFailed

from . import events, services
from .models import IdentityVerification, VerifiedIdentity, WalletSettings
from .providers import (
    PROVIDERS,
    IdentityResult,
    IdentityStart,
    IdentityStatus,
    ProviderError,
    ProviderUnavailable,
    get_provider,
)

logger = logging.getLogger(__name__)

Status = IdentityVerification.Status

# Stripe's reason codes are kept as they come (``document_expired``, ``selfie_face_mismatch``...);
# these are ours.
IDENTITY_LIMIT_REACHED = "identity_limit_reached"
IDENTITY_BLOCKED = "identity_blocked"
ALREADY_VERIFIED = "already_verified"
SUPERSEDED = "superseded"
REVOKED = "revoked"  # staff revoked it; the identity is free again
REVOKED_BLOCKED = "revoked_blocked"  # staff revoked it and blocked the user and the identity

# The sweeper polls Stripe sessions still pending this long after their start (their webhook
# may be lost), for this many days (older ones the user gives up with DELETE).
POLL_AFTER = timedelta(minutes=5)
POLL_WITHIN = timedelta(days=7)
SWEEP_BATCH = 200
# ... and asks again, for this long after an attempt ended, for the redactions the provider did
# not take (down, or refusing while a session is processing); one refused for good is not asked
# for every 10 minutes forever (each one is logged).
REDACT_WITHIN = timedelta(days=30)


class IdentityLimitReached(Conflict):
    default_code = IDENTITY_LIMIT_REACHED


def _identity_key() -> bytes:
    """The key of the ID number hashes: ``PAYMENTS_IDENTITY_KEY``, else (development only: the
    deploy check ``payments.W001`` warns) derived from ``SECRET_KEY``. A dedicated key, kept
    apart from the application's configuration and database backups, is what stands between a
    leaked table and its ID numbers: an 18-character resident ID has so little entropy (region,
    birth date, 3 digits) that whoever holds the key finds any number by trying them. Changing it
    makes every earlier hash unmatchable (an identity could then verify its accounts again)."""
    configured = getattr(settings, "PAYMENTS_IDENTITY_KEY", "")
    if configured:
        return configured.encode()
    return salted_hmac("superapp.payments.identity", "key", secret=settings.SECRET_KEY).digest()


def identity_hash(*, id_type: str, id_number: str) -> str:
    """The keyed hash that stands for an ID number: the same document gives the same hash, and
    without the key a leaked table cannot be searched for a known number (an 18-character ID
    number has little entropy: a plain hash would be brute-forced by region and birth date)."""
    normalized = "".join(id_number.split()).upper()
    return hmac.new(_identity_key(), f"{id_type}:{normalized}".encode(), hashlib.sha256).hexdigest()


def identity_check_character(*, id_type: str, id_number: str) -> str:
    """What is kept of the number besides its hash: a resident ID's check character, which is
    computed from the 17 digits before it (it narrows nothing for whoever tries numbers against
    the hash); nothing of any other document, whose last characters are plain digits."""
    if id_type != "cn_resident_id":
        return ""
    return "".join(id_number.split()).upper()[-1:]


def _lock_wallet(user_id: int) -> WalletSettings:
    services.wallet_settings_get(user_id=user_id)
    return WalletSettings.objects.select_for_update().get(user_id=user_id)


def _publish(verification: IdentityVerification, *, level: str) -> None:
    core_events.publish(
        user_ids=[verification.user_id],
        type=events.VERIFICATION_UPDATED,
        data=events.verification_payload(verification, level=level),
    )


# --- starting ------------------------------------------------------------------------------------


@sensitive_variables("id_number", "started")
def verification_start(
    *, user_id: int, legal_name: str = "", id_number: str = ""
) -> tuple[IdentityVerification, IdentityStart]:
    """Start a real-name verification with the configured provider.

    Sandbox: ``legal_name`` and ``id_number`` (mainland resident ID) are checked and verified at
    once. Stripe: a VerificationSession is created; the app finishes it with the returned
    ``client_secret`` or ``url`` (never stored), and the webhooks end it. A failed or canceled
    earlier attempt may be followed by a new one (a failed one is canceled at the provider
    first, so that it cannot turn verified later).

    Raises:
        Conflict ``already_verified`` (409): the wallet is verified already.
        Conflict ``verification_in_progress`` (409): a verification is pending.
        Forbidden ``verification_blocked`` (403): staff blocked this user's verification.
        ValidationFailed ``invalid_identity`` (400): the sandbox's name or number is malformed.
        IdentityLimitReached ``identity_limit_reached`` (409): this identity has verified
            ``PAYMENTS_IDENTITY_MAX_ACCOUNTS`` accounts already (the attempt is kept, failed).
        Forbidden ``identity_blocked`` (403): staff blocked this identity (kept, failed).
        Conflict ``verification_canceled`` (409): the user canceled it (another device) while
            it was starting; the provider's session is canceled too, its secret never given.
        ProviderError / ProviderUnavailable: the provider refused or is down (kept, failed).
    """
    provider = get_provider()
    verification, superseded = _verification_open(user_id=user_id, provider=provider.name)
    for superseded_id, ref, provider_name in superseded:
        try:
            import_string(PROVIDERS[provider_name])().identity_cancel(provider_ref=ref)
        except ApplicationError:
            # Already ended at the provider: its late "verified" would find the row canceled.
            logger.info("payments.verification_cancel_failed", extra={"provider_ref": ref})
        # After the cancel: the session can no longer turn verified, and its data goes.
        _redact_on_commit(verification_id=superseded_id, provider=provider_name)
    try:
        started = provider.identity_start(
            verification_id=verification.id, user_id=user_id, legal_name=legal_name, id_number=id_number
        )
    except ValidationFailed:
        # Bad input: nothing happened at the provider; forget the attempt (GET shows the last one).
        IdentityVerification.objects.filter(pk=verification.pk, status=Status.PENDING).delete()
        raise
    except ApplicationError as exc:
        _verification_fail(verification_id=verification.id, code=exc.code, reason=exc.message)
        raise
    if started.result is None:
        verification = _verification_started(
            verification_id=verification.id, provider_ref=started.provider_ref
        )
    else:
        IdentityVerification.objects.filter(pk=verification.pk).update(provider_ref=started.provider_ref)
        verification = _verification_finish(verification_id=verification.id, result=started.result)
    if verification.status == Status.CANCELED:
        # A DELETE won the race with this start: the user's wish holds. No secret is handed out,
        # and the session is closed so that nobody completes (and pays for) a dead attempt.
        try:
            provider.identity_cancel(provider_ref=started.provider_ref)
        except ApplicationError:
            logger.warning("payments.verification_cancel_failed", extra={"verification_id": verification.id})
        # The DELETE's own redaction found no session yet: this one is.
        _redact_on_commit(verification_id=verification.id, provider=provider.name)
        raise Conflict(_("The verification was canceled."), code="verification_canceled")
    if started.result is not None and verification.status == Status.FAILED:
        # Verified at once and refused by our rules (a Stripe attempt's outcome comes later).
        if verification.failure_code == IDENTITY_LIMIT_REACHED:
            raise IdentityLimitReached(verification.failure_reason)
        if verification.failure_code == IDENTITY_BLOCKED:
            raise Forbidden(verification.failure_reason, code=IDENTITY_BLOCKED)
        raise Conflict(verification.failure_reason, code=verification.failure_code or "verification_failed")
    return verification, started


@transaction.atomic
def _verification_open(
    *, user_id: int, provider: str
) -> tuple[IdentityVerification, list[tuple[int, str, str]]]:
    """The new pending attempt, and the (id, provider_ref, provider) of failed attempts it cancels.
    The wallet settings row is locked first: one user's starts are serialized, and the partial
    unique index ``identity_verification_one_open`` backs the check."""
    wallet = _lock_wallet(user_id)
    mine = IdentityVerification.objects.filter(user_id=user_id)
    if (
        wallet.verification_level == WalletSettings.Level.VERIFIED
        or mine.filter(status=Status.VERIFIED).exists()
    ):
        raise Conflict(_("Your real name is verified already."), code="already_verified")
    if mine.filter(status=Status.REVOKED, blocks_user=True).exists():
        raise Forbidden(
            _("Real-name verification is blocked for this account. Contact support."),
            code="verification_blocked",
        )
    if mine.filter(status=Status.PENDING).exists():
        raise Conflict(_("A verification is in progress."), code="verification_in_progress")
    superseded = list(
        mine.select_for_update()
        .filter(status=Status.FAILED)
        .exclude(provider_ref="")
        # Verified at the provider and refused by us: final there, nothing to cancel.
        .exclude(failure_code__in=[IDENTITY_LIMIT_REACHED, IDENTITY_BLOCKED, ALREADY_VERIFIED])
        .order_by("id")
        .values_list("id", "provider_ref", "provider")
    )
    if superseded:
        mine.filter(pk__in=[row[0] for row in superseded]).update(
            status=Status.CANCELED, failure_code=SUPERSEDED, resolved_at=timezone.now()
        )
    try:
        with transaction.atomic():
            verification = IdentityVerification.objects.create(user_id=user_id, provider=provider)
    except IntegrityError:  # only reachable if the settings lock were bypassed
        raise Conflict(_("A verification is in progress."), code="verification_in_progress") from None
    # No event yet: an attempt the provider refuses at once (a mistyped number) is forgotten.
    return verification, superseded


@transaction.atomic
def _verification_started(*, verification_id: int, provider_ref: str) -> IdentityVerification:
    """Remember the provider's session and tell the user's devices that it waits for them. The
    webhook may have come first (it finds the row by our metadata): then it is told already.
    The session is remembered even on an attempt canceled meanwhile (the caller closes it), so
    that its late webhooks find the row and are stale."""
    user_id = IdentityVerification.objects.values_list("user_id", flat=True).get(pk=verification_id)
    wallet = _lock_wallet(user_id)
    row = IdentityVerification.objects.select_for_update().get(pk=verification_id)
    if row.provider_ref != provider_ref:
        row.provider_ref = provider_ref
        row.save(update_fields=["provider_ref"])
        if row.status == Status.PENDING:
            _publish(row, level=wallet.verification_level)
    return row


def verification_resume(*, user_id: int) -> tuple[str, str]:
    """The ``client_secret`` and ``url`` of the user's pending attempt again, for its owner whose
    start answer was lost (Stripe hands them out again while the session waits for the user),
    so that they need not give it up and pay for a new one. ``("", "")`` when nothing waits.

    Raises:
        ProviderUnavailable: the provider could not be read.
    """
    row = (
        IdentityVerification.objects.filter(
            user_id=user_id, status=Status.PENDING, provider_verified_at__isnull=True
        )
        .exclude(provider_ref="")
        .exclude(provider="sandbox")
        .first()
    )
    if row is None:
        return "", ""
    state = import_string(PROVIDERS[row.provider])().identity_status(provider_ref=row.provider_ref)
    if state.status != "requires_input":
        return "", ""
    return state.client_secret, state.url


def verification_cancel(*, user_id: int) -> IdentityVerification:
    """The user gives up their pending verification (canceled at the provider first).

    When the provider refuses (Stripe cancels only a session waiting for the user), the
    session's real status is read and applied, as its webhook would have: a session canceled
    already ends the attempt as asked (200); one verified is completed. Never stuck pending.

    Raises:
        NotFound: no pending verification.
        ProviderError ``verification_processing`` (409): the provider is checking it, or it
            verified (the state says which).
    """
    pending = IdentityVerification.objects.filter(user_id=user_id, status=Status.PENDING).first()
    if pending is None:
        raise NotFound(_("No verification is in progress."))
    if pending.provider_verified_at is not None:
        raise Conflict(
            _("This verification is being processed and can no longer be canceled."),
            code="verification_processing",
        )
    if pending.provider_ref:
        try:
            import_string(PROVIDERS[pending.provider])().identity_cancel(provider_ref=pending.provider_ref)
        except ProviderUnavailable:
            raise
        except ProviderError:
            row = verification_refresh(verification_id=pending.pk)
            if row is not None and row.status == Status.CANCELED:
                return row
            raise
    with transaction.atomic():
        wallet = _lock_wallet(user_id)
        row = IdentityVerification.objects.select_for_update().get(pk=pending.pk)
        if row.status == Status.PENDING and row.provider_verified_at is None:
            row.status = Status.CANCELED
            row.failure_code = "canceled_by_user"
            row.resolved_at = timezone.now()
            row.save(update_fields=["status", "failure_code", "resolved_at"])
            _publish(row, level=wallet.verification_level)
            _redact_on_commit(verification_id=row.id, provider=row.provider)
        return row


# --- finishing -----------------------------------------------------------------------------------


@transaction.atomic
def _verification_finish(*, verification_id: int, result: IdentityResult) -> IdentityVerification:
    """Bind a pending verification to the identity the provider verified: ``verified`` (and the
    wallet's level with it) when the identity has room for one more account, else ``failed``
    ``identity_limit_reached``. Safe to run twice (a verification no longer pending is
    returned as it is)."""
    user_id = IdentityVerification.objects.values_list("user_id", flat=True).get(pk=verification_id)
    wallet = _lock_wallet(user_id)
    row = IdentityVerification.objects.select_for_update().get(pk=verification_id)
    if row.status != Status.PENDING:
        return row
    if IdentityVerification.objects.filter(user_id=user_id, status=Status.VERIFIED).exists():
        # Another attempt of the user verified first (under this same wallet lock): this one ends,
        # binding nothing (a revoked verification is never undone by an old attempt).
        return _verification_refuse(
            row, wallet=wallet, code=ALREADY_VERIFIED, reason=_("Your real name is verified already.")
        )
    digest = identity_hash(id_type=result.id_type, id_number=result.id_number)
    VerifiedIdentity.objects.bulk_create([VerifiedIdentity(identity_hash=digest)], ignore_conflicts=True)
    identity = VerifiedIdentity.objects.select_for_update().get(identity_hash=digest)
    row.id_type = result.id_type
    row.id_number_hash = digest
    row.id_number_check = identity_check_character(id_type=result.id_type, id_number=result.id_number)
    if identity.blocked:
        return _verification_refuse(
            row,
            wallet=wallet,
            code=IDENTITY_BLOCKED,
            reason=_("This identity cannot be verified. Contact support."),
        )
    # Counted under the identity's row lock: two accounts verifying the same identity at once
    # are serialized here, and the second sees the first's commit.
    bound = IdentityVerification.objects.filter(identity=identity, status=Status.VERIFIED).count()
    if bound >= settings.PAYMENTS_IDENTITY_MAX_ACCOUNTS:
        return _verification_refuse(
            row,
            wallet=wallet,
            code=IDENTITY_LIMIT_REACHED,
            reason=_("This identity has verified as many accounts as allowed."),
        )
    row.resolved_at = timezone.now()
    row.status = Status.VERIFIED
    row.legal_name = result.legal_name[:200]
    row.identity = identity
    row.failure_code = row.failure_reason = ""
    row.save()
    services.wallet_verification_level_set(user_id=user_id, level=WalletSettings.Level.VERIFIED)
    _publish(row, level=WalletSettings.Level.VERIFIED)
    # What we keep is stored (this commit): the provider's copy can go.
    _redact_on_commit(verification_id=row.id, provider=row.provider)
    return row


def _verification_refuse(
    row: IdentityVerification, *, wallet: WalletSettings, code: str, reason: str
) -> IdentityVerification:
    """End a pending attempt as ``failed`` with our own reason; the caller holds the wallet and
    row locks (``_verification_finish``)."""
    row.status = Status.FAILED
    row.failure_code = code
    row.failure_reason = reason
    row.resolved_at = timezone.now()
    row.save(
        update_fields=[
            "status",
            "failure_code",
            "failure_reason",
            "resolved_at",
            "id_type",
            "id_number_hash",
            "id_number_check",
        ]
    )
    _publish(row, level=wallet.verification_level)
    _redact_on_commit(verification_id=row.id, provider=row.provider)
    return row


@transaction.atomic
def _verification_fail(*, verification_id: int, code: str, reason: str) -> None:
    user_id = IdentityVerification.objects.values_list("user_id", flat=True).get(pk=verification_id)
    wallet = _lock_wallet(user_id)
    row = IdentityVerification.objects.select_for_update().get(pk=verification_id)
    if row.status != Status.PENDING:
        return
    row.status = Status.FAILED
    row.failure_code = code[:64]
    row.failure_reason = reason[:200]
    row.resolved_at = timezone.now()
    row.save(update_fields=["status", "failure_code", "failure_reason", "resolved_at"])
    _publish(row, level=wallet.verification_level)
    _redact_on_commit(verification_id=row.id, provider=row.provider)


def verification_complete(*, verification_id: int) -> None:
    """Read what the provider verified and bind it (the Celery task's body, queued by the
    ``verified`` webhook; safe to run twice). A provider that cannot be reached propagates
    ``ProviderUnavailable``: the task retries.
    """
    row = IdentityVerification.objects.filter(
        pk=verification_id, status=Status.PENDING, provider_verified_at__isnull=False
    ).first()
    if row is None:
        return
    provider = import_string(PROVIDERS[row.provider])()
    try:
        result = provider.identity_result(provider_ref=row.provider_ref)
    except ProviderUnavailable:
        raise  # the task retries
    except ProviderError as exc:
        logger.error("payments.verification_unreadable", extra={"verification_id": row.id, "code": exc.code})
        _verification_fail(verification_id=row.id, code=exc.code, reason=exc.message)
        return
    _verification_finish(verification_id=row.id, result=result)


def verification_refresh(*, verification_id: int) -> IdentityVerification | None:
    """Read a pending attempt's session at the provider and apply its status as the webhook
    would have (verified: confirmed, then completed by the task; requires_input with an error:
    failed; canceled: canceled). For a lost webhook: an endpoint not subscribed to the
    ``identity.verification_session.*`` events, a rotated secret, Stripe's retries run out.
    Returns the row as it is now (None: no such attempt waiting for the provider).

    Raises:
        ProviderUnavailable: the provider could not be read (try again later).
    """
    row = (
        IdentityVerification.objects.filter(
            pk=verification_id, status=Status.PENDING, provider_verified_at__isnull=True
        )
        .exclude(provider_ref="")
        .first()
    )
    if row is None:
        return None
    state: IdentityStatus = import_string(PROVIDERS[row.provider])().identity_status(
        provider_ref=row.provider_ref
    )
    kind = {"verified": SESSION_VERIFIED, "canceled": SESSION_CANCELED}.get(state.status)
    if state.status == "requires_input" and state.error_code:
        kind = SESSION_REQUIRES_INPUT
    if kind is not None:
        with transaction.atomic():
            locked = IdentityVerification.objects.select_for_update().get(pk=row.pk)
            outcome = _session_apply(
                locked,
                type=kind,
                ref=row.provider_ref,
                error_code=state.error_code,
                error_reason=state.error_reason,
            )
        logger.info("payments.verification_refreshed", extra={"verification_id": row.id, "outcome": outcome})
    row.refresh_from_db()
    return row


def verifications_complete_stale(*, older_than_minutes: int = 10) -> int:
    """The beat sweeper: complete again the attempts the provider said were verified but whose
    task was lost, poll the provider's sessions still pending a few minutes after their start
    (:func:`verification_refresh`: their webhook may be lost), and redact again the ended
    attempts whose redaction did not happen (the provider down, the task lost), for
    ``REDACT_WITHIN``. One row failing (the provider down, a bug) is logged and never stops the
    others. Returns the rows handled."""
    now = timezone.now()
    pending = IdentityVerification.objects.filter(status=Status.PENDING).order_by("id")
    confirmed = list(
        pending.filter(provider_verified_at__lt=now - timedelta(minutes=older_than_minutes)).values_list(
            "id", flat=True
        )[:SWEEP_BATCH]
    )
    polled = list(
        pending.filter(
            provider_verified_at__isnull=True,
            created_at__lt=now - POLL_AFTER,
            created_at__gte=now - POLL_WITHIN,
        )
        .exclude(provider_ref="")
        .exclude(provider="sandbox")
        .values_list("id", flat=True)[:SWEEP_BATCH]
    )
    unredacted = list(
        _unredacted()
        .filter(
            resolved_at__lt=now - timedelta(minutes=older_than_minutes),
            resolved_at__gte=now - REDACT_WITHIN,
        )
        .order_by("id")
        .values_list("id", flat=True)[:SWEEP_BATCH]
    )
    handled = 0
    jobs = (
        (verification_complete, confirmed),
        (verification_refresh, polled),
        (verification_redact, unredacted),
    )
    for job, ids in jobs:
        for verification_id in ids:
            try:
                job(verification_id=verification_id)
            except Exception:  # one bad row must not stop the sweep: logged, retried next run
                logger.exception(
                    "payments.verification_sweep_failed", extra={"verification_id": verification_id}
                )
            else:
                handled += 1
    return handled


# --- deleting the provider's copy ------------------------------------------------------------------


def _unredacted():
    """Ended attempts whose session the provider may still keep (the partial index
    ``identity_verif_unredacted``). A pending one is never redacted: its outputs may still have
    to be read. The sandbox keeps nothing."""
    return (
        IdentityVerification.objects.filter(redacted_at__isnull=True)
        .exclude(status=Status.PENDING)
        .exclude(provider_ref="")
        .exclude(provider="sandbox")
    )


def _redact_on_commit(*, verification_id: int, provider: str) -> None:
    """Queue :func:`verification_redact` once the caller's transaction commits (at once outside
    one): the HTTP call never runs inside a transaction, and a rolled-back end redacts nothing.
    Robust: a broker down must not turn the committed write into an error; the sweeper asks
    again."""
    if provider == "sandbox":
        return
    from .tasks import redact_verification  # the tasks module imports this one

    transaction.on_commit(lambda: redact_verification.delay(verification_id), robust=True)


def verification_redact(*, verification_id: int) -> bool:
    """Ask the provider to delete an ended attempt's session and everything tied to it (the
    document images, the selfie, the outputs it read), and record when it accepted
    (``redacted_at``). What we keep ourselves (the name, the hash, the check character) is not
    touched. The Celery task's body, and the sweeper's; safe to run twice (a redacted, pending
    or sandbox attempt is left as it is). Returns whether this call redacted it.

    Raises:
        ProviderUnavailable: the provider could not be reached (the task retries; the sweeper
            asks again later). A refusal (Stripe's session is being processed) is logged and
            left to the sweeper.
    """
    row = _unredacted().filter(pk=verification_id).first()
    if row is None:
        return False
    provider = import_string(PROVIDERS[row.provider])()
    try:
        provider.identity_redact(provider_ref=row.provider_ref)
    except ProviderUnavailable:
        raise
    except ProviderError as exc:
        logger.warning(
            "payments.verification_redact_refused", extra={"verification_id": row.id, "code": exc.code}
        )
        return False
    # Conditional: a concurrent run keeps the first time. (A late "verified" that turned the row
    # pending meanwhile finds the session redacted: verification_complete then fails it.)
    IdentityVerification.objects.filter(pk=row.pk, redacted_at__isnull=True).update(
        redacted_at=timezone.now()
    )
    logger.info("payments.verification_redacted", extra={"verification_id": row.id})
    return True


# --- the provider's webhooks -----------------------------------------------------------------------

SESSION_VERIFIED = "identity.verification_session.verified"
SESSION_REQUIRES_INPUT = "identity.verification_session.requires_input"
SESSION_CANCELED = "identity.verification_session.canceled"
SESSION_EVENTS = (SESSION_VERIFIED, SESSION_REQUIRES_INPUT, SESSION_CANCELED)


def verification_event_apply(*, provider: str, type: str, obj: dict) -> str:
    """Apply one verified ``identity.verification_session.*`` webhook; returns the outcome.

    Runs inside ``services.provider_event_handle``'s transaction, which deduplicated the event
    by id. Events may come late or out of order; Stripe's session goes ``requires_input`` ->
    (the user retries) -> ``verified``, and ``verified`` and ``canceled`` are final. So: once
    the provider said verified, a later ``requires_input`` or ``canceled`` is stale and changes
    nothing; a ``verified`` after ``requires_input`` still verifies; nothing moves a canceled,
    revoked or verified attempt, and a ``canceled`` leaves a failed one failed (its redaction
    cancels a session waiting for the user). The verified outputs are read by a task after commit (an HTTP
    call never runs inside a transaction).
    """
    ref = str(obj.get("id") or "")
    row = (
        IdentityVerification.objects.select_for_update().filter(provider=provider, provider_ref=ref).first()
        if ref
        else None
    )
    if row is None:
        # The webhook may beat the create call's answer: fall back on our metadata, only for
        # the same user's attempt still waiting for its session (a session from another
        # deployment on the same Stripe account, or one the user never got, binds nothing).
        metadata = obj.get("metadata") or {}
        meta_id = str(metadata.get("verification_id") or "")
        meta_user = str(metadata.get("user_id") or "")
        if meta_id.isascii() and meta_id.isdigit() and meta_user.isascii() and meta_user.isdigit():
            row = (
                IdentityVerification.objects.select_for_update()
                .filter(
                    pk=int(meta_id),
                    user_id=int(meta_user),
                    provider=provider,
                    provider_ref="",
                    status=Status.PENDING,
                )
                .first()
            )
    if row is None:
        logger.warning("payments.webhook_unknown_object", extra={"type": type, "object": ref})
        return "unknown_object"
    error = obj.get("last_error") or {}
    return _session_apply(
        row,
        type=type,
        ref=ref,
        error_code=str(error.get("code") or ""),
        error_reason=str(error.get("reason") or ""),
    )


def _session_apply(
    row: IdentityVerification, *, type: str, ref: str, error_code: str = "", error_reason: str = ""
) -> str:
    """Apply a session's status (a webhook's, or one read back) to its attempt, whose row the
    caller holds locked in its transaction; returns the outcome."""
    if row.status in (Status.VERIFIED, Status.REVOKED, Status.CANCELED) or row.provider_verified_at:
        return "stale"
    if type == SESSION_CANCELED and row.status == Status.FAILED:
        # A failed attempt's session canceled afterwards (redacting a session that waits for the
        # user cancels it): it stays failed, with the reason the user needs.
        return "stale"
    if type == SESSION_VERIFIED:
        if (
            IdentityVerification.objects.filter(user_id=row.user_id, status=Status.VERIFIED)
            .exclude(pk=row.pk)
            .exists()
        ):
            return ALREADY_VERIFIED  # nothing changes: the user's verification stands as it is
        row.status = Status.PENDING
        row.provider_ref = ref
        row.provider_verified_at = timezone.now()
        row.failure_code = row.failure_reason = ""
        row.resolved_at = None
        try:
            with transaction.atomic():
                row.save(
                    update_fields=[
                        "status",
                        "provider_ref",
                        "provider_verified_at",
                        "failure_code",
                        "failure_reason",
                        "resolved_at",
                    ]
                )
        except IntegrityError:
            # A failed attempt verified late, while the user has started another: that one counts.
            return "stale"
        from .tasks import complete_verification  # the tasks module imports this one

        verification_id = row.id
        transaction.on_commit(lambda: complete_verification.delay(verification_id))
        return "verification_confirmed"
    if type == SESSION_REQUIRES_INPUT:
        row.status = Status.FAILED
        row.failure_code = (error_code or "requires_input")[:64]
        row.failure_reason = error_reason[:200]
        outcome = "verification_failed"
    else:
        row.status = Status.CANCELED
        row.failure_code = "canceled"
        row.failure_reason = ""
        outcome = "verification_canceled"
    row.resolved_at = timezone.now()
    row.save(update_fields=["status", "failure_code", "failure_reason", "resolved_at"])
    _publish(row, level=services.wallet_settings_get(user_id=row.user_id).verification_level)
    _redact_on_commit(verification_id=row.id, provider=row.provider)
    return outcome


# --- staff ---------------------------------------------------------------------------------------


@transaction.atomic
def verification_revoke(
    *, verification_id: int, actor_id: int, reason: str = "", block: bool = False, ip: str | None = None
) -> IdentityVerification:
    """Staff take a verification back: the wallet returns to ``unverified`` (lower limits), the
    user's devices are told, the audit log records it with ``reason`` (kept there only: the
    user sees the code ``revoked`` or ``revoked_blocked``, never a staff note).

    ``block`` False (unbind: a mistake, the user asked): the identity is free for another
    account and the user may verify again. ``block`` True (fraud, a stolen ID, as WeChat and
    Stripe keep such identities out): the user cannot start a verification and the identity
    cannot verify any account until staff lift it (:func:`verification_block_lift`); accounts
    already verified with it stay as they are.

    Raises:
        NotFound: no such verification.
        Conflict ``not_verified`` (409): only a verified verification can be revoked.
    """
    user_id = (
        IdentityVerification.objects.filter(pk=verification_id).values_list("user_id", flat=True).first()
    )
    if user_id is None:
        raise NotFound()
    _lock_wallet(user_id)
    row = IdentityVerification.objects.select_for_update().get(pk=verification_id)
    if row.status != Status.VERIFIED:
        raise Conflict(_("Only a verified verification can be revoked."), code="not_verified")
    row.status = Status.REVOKED
    row.revoked_by_id = actor_id
    row.failure_code = REVOKED_BLOCKED if block else REVOKED
    row.failure_reason = ""
    row.blocks_user = block
    row.resolved_at = timezone.now()
    row.save(
        update_fields=["status", "revoked_by", "failure_code", "failure_reason", "blocks_user", "resolved_at"]
    )
    if block:
        VerifiedIdentity.objects.filter(pk=row.identity_id).update(blocked=True)
    services.wallet_verification_level_set(user_id=user_id, level=WalletSettings.Level.UNVERIFIED)
    audit.audit_record(
        actor_id=actor_id,
        action="payments.verification.revoke",
        target=row,
        details={"user_id": user_id, "reason": reason[:200], "block": block},
        ip=ip,
    )
    _publish(row, level=WalletSettings.Level.UNVERIFIED)
    # Normally redacted when it verified; if the provider had not taken it yet, now.
    _redact_on_commit(verification_id=row.id, provider=row.provider)
    return row


@transaction.atomic
def verification_block_lift(
    *, verification_id: int, actor_id: int, ip: str | None = None
) -> IdentityVerification:
    """Staff lift the block a revoke put on a user and its identity: the user may verify again,
    and the identity may verify accounts again (within ``PAYMENTS_IDENTITY_MAX_ACCOUNTS``).
    The verification stays revoked (code ``revoked``); audit-logged.

    Raises:
        NotFound: no such verification.
        Conflict ``not_blocked`` (409): this verification blocks nothing.
    """
    user_id = (
        IdentityVerification.objects.filter(pk=verification_id).values_list("user_id", flat=True).first()
    )
    if user_id is None:
        raise NotFound()
    wallet = _lock_wallet(user_id)
    row = IdentityVerification.objects.select_for_update().get(pk=verification_id)
    if row.status != Status.REVOKED or not row.blocks_user:
        raise Conflict(_("This verification blocks nothing."), code="not_blocked")
    row.blocks_user = False
    row.failure_code = REVOKED
    row.save(update_fields=["blocks_user", "failure_code"])
    VerifiedIdentity.objects.filter(pk=row.identity_id).update(blocked=False)
    audit.audit_record(
        actor_id=actor_id,
        action="payments.verification.unblock",
        target=row,
        details={"user_id": user_id},
        ip=ip,
    )
    _publish(row, level=wallet.verification_level)
    return row
