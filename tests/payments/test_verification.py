"""Real-name verification: the sandbox through the API, Stripe Identity through the real
``stripe`` library against the fake Stripe server and signed webhooks, identity uniqueness under
concurrency on PostgreSQL, the event's shape, and staff revoking in the admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
import stripe
from django.db import connection
from django.utils import timezone

from payments import events, services, tasks, verification
from payments.models import IdentityVerification, ProviderEvent, VerifiedIdentity, WalletSettings
from payments.providers.sandbox import cn_resident_id_valid
from superapp.core.audit import audit_entries_for
from superapp.core.errors import ApplicationError
from superapp.core.models import Event
from tests.threads import indexed, run_together

from ..conftest import befriend
from .conftest import PIN, fund, with_pin
from .fake_stripe import FakeStripe

URL = "/api/v1/payments/verification"
WEBHOOK = "/api/v1/payments/webhooks/stripe"


def resident_id(body17: str) -> str:
    """A well-formed resident ID: 17 digits and their ISO 7064 MOD 11-2 check character."""
    total = sum(int(d) * pow(2, 17 - i, 11) for i, d in enumerate(body17))
    return body17 + "10X98765432"[total % 11]


ID_A = resident_id("11010519491231002")  # ends in X
ID_B = resident_id("44030419900307123")


def level(user) -> str:
    row = WalletSettings.objects.filter(user_id=user.pk).first()
    return row.verification_level if row else "unverified"


def verify_sandbox(client, *, name="李明", number=ID_A):
    return client.post(URL, {"legal_name": name, "id_number": number}, format="json")


def events_of(user) -> list[dict]:
    return [e.data for e in Event.objects.filter(user=user, type=events.VERIFICATION_UPDATED).order_by("seq")]


@pytest.fixture
def fake_stripe(settings):
    with FakeStripe() as fake:
        settings.PAYMENTS_PROVIDER = "stripe"
        settings.STRIPE_SECRET_KEY = "sk_test_fake"
        settings.STRIPE_API_BASE = fake.url
        settings.STRIPE_WEBHOOK_SECRET = "whsec_test_fake"
        yield fake


def deliver(api, fake, type_, session, **kwargs):
    body, signature = fake.event(type_, session, **kwargs)
    return api.post(WEBHOOK, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)


# --- the sandbox ---------------------------------------------------------------------------------


def test_the_check_character_is_iso_7064_mod_11_2():
    assert ID_A == "11010519491231002X" and cn_resident_id_valid(ID_A)
    assert not cn_resident_id_valid(ID_A[:-1] + "1")  # wrong check character
    assert not cn_resident_id_valid(resident_id("11010519491331002"))  # month 13
    assert not cn_resident_id_valid(resident_id("11010530000101002"))  # born in the future
    assert not cn_resident_id_valid(ID_A[:17])


@pytest.mark.django_db
def test_sandbox_verification_through_the_api(client_for, alice):
    client = client_for(alice)
    assert client.get(URL).json() == {
        "status": "none",
        "verification_level": "unverified",
        "verification": None,
    }
    response = verify_sandbox(client, number=ID_A.lower())  # "x" is read as "X"
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["status"], body["verification_level"], body["client_secret"], body["url"]) == (
        "verified",
        "verified",
        "",
        "",
    )
    shown = body["verification"]
    assert (shown["legal_name"], shown["id_type"], shown["id_number_masked"], shown["provider"]) == (
        "*明",
        "cn_resident_id",
        "*****************X",
        "sandbox",
    )
    assert client.get(URL).json()["verification"] == shown
    assert client.get("/api/v1/payments/wallet").json()["limits"] == {
        "per_payment": 5_000_000,
        "per_day": 20_000_000,
    }
    row = IdentityVerification.objects.get()
    assert row.legal_name == "李明" and level(alice) == "verified"
    # The number itself is stored nowhere: its keyed hash and its check character only.
    assert row.id_number_hash == verification.identity_hash(id_type="cn_resident_id", id_number=ID_A)
    assert row.identity.identity_hash == row.id_number_hash and row.id_number_check == "X"
    stored = " ".join(str(v) for v in IdentityVerification.objects.values().get().values())
    assert ID_A[:14] not in stored and ID_A[14:17] not in stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"legal_name": "李明", "id_number": ID_A[:-1] + "1"}, {"id_number"}),
        ({"legal_name": "李明", "id_number": "1234"}, {"id_number"}),
        ({"legal_name": "李明", "id_number": resident_id("11010519490231002")}, {"id_number"}),  # Feb 31
        ({"legal_name": "", "id_number": ID_A}, {"legal_name"}),
        ({"legal_name": "R2-D2", "id_number": ID_A}, {"legal_name"}),
        ({}, {"legal_name", "id_number"}),
        ({"legal_name": "李明", "id_number": "1" * 40}, {"id_number"}),
    ],
)
def test_a_bad_identity_is_400_with_field_errors(client_for, alice, payload, fields):
    response = client_for(alice).post(URL, payload, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == fields
    assert not IdentityVerification.objects.exists() and level(alice) == "unverified"
    assert client_for(alice).get(URL).json()["status"] == "none"


@pytest.mark.django_db
def test_a_verified_user_cannot_start_again(client_for, alice, bob):
    client = client_for(alice)
    assert verify_sandbox(client).status_code == 201
    again = verify_sandbox(client, number=ID_B)
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_verified"
    # Staff set the level by hand (the admin action): verified too.
    services.wallet_verification_level_set(user_id=bob.pk, level="verified")
    by_staff = verify_sandbox(client_for(bob), number=ID_B)
    assert by_staff.status_code == 409 and by_staff.json()["error"]["code"] == "already_verified"
    assert IdentityVerification.objects.count() == 1


@pytest.mark.django_db
def test_another_users_verification_is_never_visible(client_for, alice, bob):
    assert verify_sandbox(client_for(alice)).status_code == 201
    assert client_for(bob).get(URL).json() == {
        "status": "none",
        "verification_level": "unverified",
        "verification": None,
    }
    assert client_for(bob).delete(URL).status_code == 404
    assert events_of(bob) == [] and len(events_of(alice)) == 1
    assert IdentityVerification.objects.get().status == "verified"


@pytest.mark.django_db
def test_limits_change_after_verification(client_for, alice, bob):
    befriend(alice, bob)
    with_pin(alice)
    fund(alice, 100_000)
    client = client_for(alice)

    def send(key):
        return client.post(
            "/api/v1/payments/transfers",
            {"receiver_id": bob.pk, "amount": 30_000, "pin": PIN},
            format="json",
            HTTP_IDEMPOTENCY_KEY=key,
        )

    refused = send("t1")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "limit_per_payment"
    assert verify_sandbox(client).status_code == 201
    assert send("t2").status_code == 201


@pytest.mark.django_db
def test_one_identity_verifies_at_most_the_allowed_accounts(client_for, alice, bob, carol, settings):
    settings.PAYMENTS_IDENTITY_MAX_ACCOUNTS = 1
    assert verify_sandbox(client_for(alice)).status_code == 201
    refused = verify_sandbox(client_for(bob))
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "identity_limit_reached"
    state = client_for(bob).get(URL).json()
    assert (state["status"], state["verification"]["failure_code"], state["verification_level"]) == (
        "failed",
        "identity_limit_reached",
        "unverified",
    )
    # Another identity is fine; the failed attempt does not block a new one.
    assert verify_sandbox(client_for(bob), number=ID_B).status_code == 201
    assert VerifiedIdentity.objects.count() == 2
    # Freed by staff, the first identity can verify another account.
    alices = IdentityVerification.objects.get(user=alice)
    staff = carol
    verification.verification_revoke(verification_id=alices.pk, actor_id=staff.pk)
    assert verify_sandbox(client_for(carol)).status_code == 201


@pytest.mark.django_db
def test_the_event_payload_shape(
    client_for, alice, bob, fake_stripe, settings, django_capture_on_commit_callbacks
):
    keys = {
        "id", "status", "provider", "legal_name", "id_type", "id_number_masked", "failure_code",
        "failure_reason", "created_at", "resolved_at", "verification_level",
    }  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        start_stripe(client_for(bob), fake_stripe)
    assert callbacks  # the doorbell rings after commit
    [pending] = events_of(bob)
    assert set(pending) == keys
    assert (pending["status"], pending["provider"], pending["legal_name"], pending["verification_level"]) == (
        "pending",
        "stripe",
        "",
        "unverified",
    )
    assert pending["resolved_at"] is None and pending["id"] == IdentityVerification.objects.get(user=bob).pk

    settings.PAYMENTS_PROVIDER = "sandbox"  # verifies at once: one event, the outcome
    assert verify_sandbox(client_for(alice), name="Jenny Rosen").status_code == 201
    [verified] = events_of(alice)
    assert set(verified) == keys
    assert (
        verified["status"],
        verified["legal_name"],
        verified["id_type"],
        verified["id_number_masked"],
    ) == (
        "verified",
        "***** Rosen",
        "cn_resident_id",
        "*****************X",
    )
    assert verified["verification_level"] == "verified" and verified["resolved_at"]
    assert events.VERIFICATION_UPDATED in events.ALL_TYPES


# --- Stripe Identity -------------------------------------------------------------------------------


def start_stripe(client, fake):
    response = client.post(URL, {}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending" and body["client_secret"].startswith("vs_") and body["url"]
    [session_id] = list(fake.verification_sessions)[-1:]
    return session_id


@pytest.mark.django_db
def test_stripe_verification_ends_by_the_signed_webhook(
    client_for, api, alice, fake_stripe, django_capture_on_commit_callbacks
):
    client = client_for(alice)
    session_id = start_stripe(client, fake_stripe)
    create = next(r for r in fake_stripe.requests if r["path"] == "/v1/identity/verification_sessions")
    row = IdentityVerification.objects.get()
    assert create["params"]["type"] == "document"
    assert create["params"]["metadata[verification_id]"] == str(row.pk)
    assert create["idempotency_key"] == f"identity-{row.pk}"
    assert row.provider_ref == session_id and level(alice) == "unverified"
    again = client.post(URL, {}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "verification_in_progress"

    session = fake_stripe.identity_verify(session_id, number="D7654321")
    with django_capture_on_commit_callbacks(execute=True):
        answer = deliver(api, fake_stripe, "identity.verification_session.verified", session)
    assert answer.status_code == 200 and answer.json()["outcome"] == "verification_confirmed"
    state = client.get(URL).json()
    assert (state["status"], state["verification_level"]) == ("verified", "verified")
    shown = state["verification"]
    assert (shown["legal_name"], shown["id_type"], shown["id_number_masked"]) == (
        "***** Rosen",
        "us_driving_license",
        "",  # no digit of a document number is kept
    )
    # The name from the session's verified outputs, the number from its report, each expanded.
    paths = [(r["method"], r["path"].split("?")[0], r["params"]) for r in fake_stripe.requests]
    assert any(m == "GET" and p == f"/v1/identity/verification_sessions/{session_id}"
               and "verified_outputs" in q.values() for m, p, q in paths)  # fmt: skip
    assert any(m == "GET" and p.startswith("/v1/identity/verification_reports/")
               and "document.number" in q.values() for m, p, q in paths)  # fmt: skip
    assert [e["status"] for e in events_of(alice)] == ["pending", "verified"]


@pytest.mark.django_db
def test_stripe_requires_input_keeps_the_reason_then_a_retry_verifies(
    client_for, api, alice, fake_stripe, django_capture_on_commit_callbacks
):
    client = client_for(alice)
    session_id = start_stripe(client, fake_stripe)
    failed = fake_stripe.identity_requires_input(
        session_id, code="document_expired", reason="The document is expired."
    )
    assert deliver(api, fake_stripe, "identity.verification_session.requires_input", failed).json()[
        "outcome"
    ] == ("verification_failed")
    state = client.get(URL).json()
    assert (
        state["status"],
        state["verification"]["failure_code"],
        state["verification"]["failure_reason"],
    ) == (
        "failed",
        "document_expired",
        "The document is expired.",
    )
    # The user tries again in the same Stripe session, and passes.
    verified = fake_stripe.identity_verify(session_id)
    with django_capture_on_commit_callbacks(execute=True):
        deliver(api, fake_stripe, "identity.verification_session.verified", verified)
    assert client.get(URL).json()["status"] == "verified" and level(alice) == "verified"
    assert [e["status"] for e in events_of(alice)] == ["pending", "failed", "verified"]


@pytest.mark.django_db
def test_stripe_canceled_then_a_new_attempt(client_for, api, alice, fake_stripe):
    client = client_for(alice)
    first = start_stripe(client, fake_stripe)
    canceled = {**fake_stripe.identity_session(first), "status": "canceled"}
    assert deliver(api, fake_stripe, "identity.verification_session.canceled", canceled).json()[
        "outcome"
    ] == ("verification_canceled")
    assert client.get(URL).json()["status"] == "canceled"
    second = start_stripe(client, fake_stripe)
    assert second != first and IdentityVerification.objects.filter(status="pending").count() == 1


@pytest.mark.django_db
def test_the_user_cancels_a_pending_stripe_verification(client_for, alice, fake_stripe):
    client = client_for(alice)
    session_id = start_stripe(client, fake_stripe)
    answer = client.delete(URL)
    assert answer.status_code == 200 and answer.json()["status"] == "canceled"
    assert fake_stripe.identity_session(session_id)["status"] == "canceled"
    assert client.delete(URL).status_code == 404


@pytest.mark.django_db
def test_a_new_attempt_after_a_failure_cancels_the_old_session(
    client_for, api, alice, fake_stripe, django_capture_on_commit_callbacks
):
    client = client_for(alice)
    first = start_stripe(client, fake_stripe)
    deliver(
        api,
        fake_stripe,
        "identity.verification_session.requires_input",
        fake_stripe.identity_requires_input(first, code="selfie_face_mismatch", reason="No match."),
    )
    second = start_stripe(client, fake_stripe)
    assert fake_stripe.identity_session(first)["status"] == "canceled"
    old = IdentityVerification.objects.get(provider_ref=first)
    assert (old.status, old.failure_code) == ("canceled", "superseded")
    # A late "verified" of the old session (sent before Stripe saw the cancel) changes nothing.
    late = {**fake_stripe.identity_session(first), "status": "verified"}
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            deliver(api, fake_stripe, "identity.verification_session.verified", late).json()["outcome"]
            == "stale"
        )
    assert (
        IdentityVerification.objects.get(provider_ref=second).status == "pending"
        and level(alice) == "unverified"
    )


@pytest.mark.django_db
def test_replayed_and_out_of_order_events_are_harmless(
    client_for, api, alice, fake_stripe, django_capture_on_commit_callbacks
):
    client = client_for(alice)
    session_id = start_stripe(client, fake_stripe)
    stale_failure = fake_stripe.identity_requires_input(
        session_id, code="document_unverified_other", reason="?"
    )
    verified = fake_stripe.identity_verify(session_id)
    with django_capture_on_commit_callbacks(execute=True):
        first = deliver(
            api, fake_stripe, "identity.verification_session.verified", verified, event_id="evt_v"
        )
        replay = deliver(
            api, fake_stripe, "identity.verification_session.verified", verified, event_id="evt_v"
        )
        late_failure = deliver(
            api, fake_stripe, "identity.verification_session.requires_input", stale_failure
        )
        late_cancel = deliver(
            api, fake_stripe, "identity.verification_session.canceled", {**verified, "status": "canceled"}
        )
        unknown = deliver(
            api,
            fake_stripe,
            "identity.verification_session.verified",
            {**verified, "id": "vs_nobody", "metadata": {}},
        )
        other_type = deliver(api, fake_stripe, "identity.verification_session.processing", verified)
    assert [r.json()["outcome"] for r in (first, replay, late_failure, late_cancel, unknown, other_type)] == [
        "verification_confirmed",
        "duplicate",
        "stale",
        "stale",
        "unknown_object",
        "ignored",
    ]
    assert client.get(URL).json()["status"] == "verified"
    assert IdentityVerification.objects.get().status == "verified" and VerifiedIdentity.objects.count() == 1
    assert [e["status"] for e in events_of(alice)] == ["pending", "verified"]
    assert ProviderEvent.objects.filter(event_id="evt_v").count() == 1
    # The task run again (a redelivery) does nothing either.
    tasks.complete_verification.delay(IdentityVerification.objects.get().pk)
    assert len(events_of(alice)) == 2


@pytest.mark.django_db
def test_a_bad_signature_is_400_and_changes_nothing(client_for, api, alice, fake_stripe):
    session_id = start_stripe(client_for(alice), fake_stripe)
    body, signature = fake_stripe.event(
        "identity.verification_session.verified",
        fake_stripe.identity_verify(session_id),
        secret="whsec_wrong",
    )
    answer = api.post(WEBHOOK, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_signature"
    assert IdentityVerification.objects.get().status == "pending" and not ProviderEvent.objects.exists()


@pytest.mark.django_db
def test_a_lost_task_is_completed_by_the_sweeper(client_for, api, alice, fake_stripe):
    session_id = start_stripe(client_for(alice), fake_stripe)
    # Delivered without running the on-commit callbacks: the task is "lost".
    deliver(
        api, fake_stripe, "identity.verification_session.verified", fake_stripe.identity_verify(session_id)
    )
    row = IdentityVerification.objects.get()
    assert row.status == "pending" and row.provider_verified_at
    assert tasks.complete_stale_verifications.delay().get() == 0  # too recent
    IdentityVerification.objects.filter(pk=row.pk).update(
        provider_verified_at=row.provider_verified_at.replace(year=2020)
    )
    assert tasks.complete_stale_verifications.delay().get() == 1
    assert IdentityVerification.objects.get().status == "verified" and level(alice) == "verified"


# --- identity uniqueness under concurrency ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("allowed", [1, 3])
def test_one_identity_verifying_many_accounts_at_once(make_user, settings, allowed):
    assert connection.vendor == "postgresql"
    settings.PAYMENTS_IDENTITY_MAX_ACCOUNTS = allowed
    users = [make_user() for _ in range(8)]
    outcomes = run_together(
        indexed(
            len(users),
            lambda i: verification.verification_start(user_id=users[i].pk, legal_name="李明", id_number=ID_A),
        ),
        timeout=60,
    ).errors
    assert all(o is None or isinstance(o, verification.IdentityLimitReached) for o in outcomes), outcomes
    assert outcomes.count(None) == allowed
    assert IdentityVerification.objects.filter(status="verified").count() == allowed
    assert IdentityVerification.objects.filter(
        status="failed", failure_code="identity_limit_reached"
    ).count() == (8 - allowed)
    assert VerifiedIdentity.objects.count() == 1
    assert WalletSettings.objects.filter(verification_level="verified").count() == allowed


@pytest.mark.django_db(transaction=True)
def test_one_user_starting_many_times_at_once(make_user):
    user = make_user()
    outcomes = run_together(
        indexed(
            6, lambda i: verification.verification_start(user_id=user.pk, legal_name="李明", id_number=ID_A)
        ),
        timeout=60,
    ).errors
    assert outcomes.count(None) == 1
    assert all(
        getattr(o, "code", None) in (None, "already_verified", "verification_in_progress") for o in outcomes
    ), outcomes
    assert IdentityVerification.objects.filter(user=user).count() == 1


# --- staff ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_revoke_in_the_admin(admin_client, admin_user, client_for, alice, bob):
    assert verify_sandbox(client_for(alice), name="Jenny Rosen").status_code == 201
    assert verify_sandbox(client_for(bob), number=ID_B).status_code == 201
    bobs = IdentityVerification.objects.get(user=bob)
    IdentityVerification.objects.filter(pk=bobs.pk).update(status="revoked")  # revoked already: refused below
    row = IdentityVerification.objects.get(user=alice)
    listing = admin_client.get("/admin/payments/identityverification/")
    assert (
        listing.status_code == 200
        and b"***** Rosen" in listing.content
        and ID_A.encode() not in listing.content
    )
    detail = admin_client.get(f"/admin/payments/identityverification/{row.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content  # read-only
    done = admin_client.post(
        "/admin/payments/identityverification/",
        {"action": "revoke", "_selected_action": [row.pk, bobs.pk]},
    )
    assert done.status_code == 302
    row.refresh_from_db()
    assert (row.status, row.revoked_by_id, level(alice)) == ("revoked", admin_user.pk, "unverified")
    assert IdentityVerification.objects.get(pk=bobs.pk).status == "revoked"
    [entry] = audit_entries_for(target=row)
    assert entry.action == "payments.verification.revoke" and entry.actor_id == admin_user.pk
    assert (
        events_of(alice)[-1]["status"] == "revoked"
        and events_of(alice)[-1]["verification_level"] == "unverified"
    )
    assert client_for(alice).get("/api/v1/payments/wallet").json()["limits"]["per_payment"] == 20_000
    # The old staff action on wallet settings is still there.
    page = admin_client.get("/admin/payments/walletsettings/")
    assert page.status_code == 200 and b"mark_verified" in page.content
    # Revoked, the user may verify again.
    assert verify_sandbox(client_for(alice), name="Jenny Rosen").status_code == 201


@pytest.mark.django_db
def test_a_chinese_id_card_read_by_stripe_is_the_same_identity(
    client_for, api, alice, bob, fake_stripe, settings, django_capture_on_commit_callbacks
):
    settings.PAYMENTS_IDENTITY_MAX_ACCOUNTS = 1
    settings.PAYMENTS_PROVIDER = "sandbox"
    assert verify_sandbox(client_for(alice)).status_code == 201
    settings.PAYMENTS_PROVIDER = "stripe"
    session_id = start_stripe(client_for(bob), fake_stripe)
    session = fake_stripe.identity_verify(
        session_id,
        first_name="明",
        last_name="李",
        number=ID_A,
        issuing_country="CN",
        document_type="id_card",
    )
    with django_capture_on_commit_callbacks(execute=True):
        deliver(api, fake_stripe, "identity.verification_session.verified", session)
    state = client_for(bob).get(URL).json()
    assert (state["status"], state["verification"]["failure_code"], state["verification_level"]) == (
        "failed",
        "identity_limit_reached",
        "unverified",
    )
    assert events_of(bob)[-1]["failure_code"] == "identity_limit_reached"
    assert VerifiedIdentity.objects.count() == 1


@pytest.mark.django_db
def test_stripe_down_when_starting_is_503_and_the_attempt_failed(client_for, alice, fake_stripe, settings):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    client = client_for(alice)
    answer = client.post(URL, {}, format="json")
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "provider_unavailable"
    state = client.get(URL).json()
    assert (state["status"], state["verification"]["failure_code"]) == ("failed", "provider_unavailable")
    settings.STRIPE_API_BASE = fake_stripe.url
    start_stripe(client, fake_stripe)  # a failed attempt does not block the next one


@pytest.mark.django_db
def test_reading_my_verification_is_three_queries(client_for, alice, django_assert_num_queries):
    client = client_for(alice)
    assert verify_sandbox(client).status_code == 201
    with django_assert_num_queries(3):  # the token's user and session, the settings, the latest attempt
        assert client.get(URL).json()["status"] == "verified"


# --- review fixes (D1-D10) ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_detail_page_shows_no_full_name_nor_hash(admin_client, client_for, alice):
    assert verify_sandbox(client_for(alice), name="Jenny Rosen").status_code == 201
    row = IdentityVerification.objects.get(user=alice)
    page = admin_client.get(f"/admin/payments/identityverification/{row.pk}/change/")
    assert page.status_code == 200
    assert b"Jenny Rosen" not in page.content and b"***** Rosen" in page.content
    assert row.id_number_hash.encode() not in page.content
    assert row.id_number_hash[:12].encode() not in page.content  # not even as the identity's name
    assert b"*****************X" in page.content


@pytest.mark.django_db
def test_no_digit_of_the_number_is_kept_nor_shown(
    client_for, api, alice, bob, fake_stripe, settings, django_capture_on_commit_callbacks
):
    number = resident_id("11010519880615123")  # Beijing Xicheng, born 1988-06-15, sequence 123
    settings.PAYMENTS_PROVIDER = "sandbox"
    assert verify_sandbox(client_for(alice), number=number).status_code == 201
    row = IdentityVerification.objects.get(user=alice)
    shown = client_for(alice).get(URL).json()["verification"]["id_number_masked"]
    event = events_of(alice)[-1]["id_number_masked"]
    stored = " ".join(str(v) for v in IdentityVerification.objects.values().get(pk=row.pk).values())
    # Region and birth date are often known: the sequence digits are what the hash hides (with
    # them, whoever holds the key found the number in 36,500 tries).
    assert number[14:17] not in stored and number[14:17] not in shown
    assert row.id_number_check == number[-1] and shown == event == "*" * 17 + number[-1]
    # A passport or driving licence read by Stripe: nothing of its number at all.
    settings.PAYMENTS_PROVIDER = "stripe"
    session_id = start_stripe(client_for(bob), fake_stripe)
    with django_capture_on_commit_callbacks(execute=True):
        deliver(
            api,
            fake_stripe,
            "identity.verification_session.verified",
            fake_stripe.identity_verify(session_id, number="D7654321"),
        )
    bobs = IdentityVerification.objects.get(user=bob)
    assert bobs.status == "verified" and bobs.id_number_check == ""
    assert client_for(bob).get(URL).json()["verification"]["id_number_masked"] == ""


def test_the_deploy_check_wants_a_dedicated_identity_key(settings):
    from django.core.checks import run_checks

    def warned() -> bool:
        found = run_checks(include_deployment_checks=True)
        return any(message.id == "payments.W001" for message in found)

    settings.PAYMENTS_IDENTITY_KEY = ""
    assert warned()
    settings.PAYMENTS_IDENTITY_KEY = "short"
    assert warned()
    settings.PAYMENTS_IDENTITY_KEY = settings.SECRET_KEY = "s" * 50
    assert warned()
    settings.PAYMENTS_IDENTITY_KEY = "a-dedicated-identity-hash-key-0123456789-abcdefghij"
    assert not warned()
    assert not any(m.id == "payments.W001" for m in run_checks())  # a deploy check only


@pytest.mark.django_db
@pytest.mark.parametrize("at_stripe", ["verified", "requires_input", "canceled", "processing"])
def test_a_lost_webhook_is_made_up_for_by_polling_the_session(
    client_for, alice, fake_stripe, django_capture_on_commit_callbacks, at_stripe
):
    client = client_for(alice)
    session_id = start_stripe(client, fake_stripe)
    # The user acts at Stripe, and the webhook never comes (endpoint not subscribed, secret rotated...).
    if at_stripe == "verified":
        fake_stripe.identity_verify(session_id, number="D7654321")
    elif at_stripe == "requires_input":
        fake_stripe.identity_requires_input(session_id, code="document_expired", reason="Expired.")
    else:
        fake_stripe.verification_sessions[session_id]["status"] = at_stripe
    assert tasks.complete_stale_verifications.delay().get() == 0  # too recent to poll
    row = IdentityVerification.objects.get()
    IdentityVerification.objects.filter(pk=row.pk).update(
        created_at=row.created_at - verification.POLL_AFTER - timedelta(seconds=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.complete_stale_verifications.delay().get() == 1
    row.refresh_from_db()
    expected = {
        "verified": ("verified", "", "verified"),
        "requires_input": ("failed", "document_expired", "unverified"),
        "canceled": ("canceled", "canceled", "unverified"),
        "processing": ("pending", "", "unverified"),  # still being checked: polled again later
    }[at_stripe]
    assert (row.status, row.failure_code, level(alice)) == expected
    assert client.get(URL).json()["status"] == expected[0]


@pytest.mark.django_db
def test_a_refused_cancel_applies_the_sessions_real_status(
    client_for, alice, bob, fake_stripe, django_capture_on_commit_callbacks
):
    # Canceled at Stripe already (its webhook lost): DELETE is what the user wanted, 200.
    first = start_stripe(client_for(alice), fake_stripe)
    fake_stripe.verification_sessions[first]["status"] = "canceled"
    answer = client_for(alice).delete(URL)
    assert answer.status_code == 200 and answer.json()["status"] == "canceled"
    assert client_for(alice).delete(URL).status_code == 404  # a second DELETE: nothing pending
    start_stripe(client_for(alice), fake_stripe)  # and a new attempt is possible
    # Verified at Stripe (webhook lost): 409, and the verification completes.
    second = start_stripe(client_for(bob), fake_stripe)
    fake_stripe.identity_verify(second)
    with django_capture_on_commit_callbacks(execute=True):
        refused = client_for(bob).delete(URL)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "verification_processing"
    assert client_for(bob).get(URL).json()["status"] == "verified" and level(bob) == "verified"


@pytest.mark.django_db
def test_a_cancel_racing_the_stripe_start_leaves_no_live_session(client_for, alice, fake_stripe, monkeypatch):
    from payments.providers import stripe as stripe_provider

    client = client_for(alice)
    real = stripe_provider.StripeProvider.identity_start
    answers = {}

    def start_while_the_user_cancels(self, **kwargs):
        answers["delete"] = client.delete(URL)  # the user's other device, while the create is on the wire
        return real(self, **kwargs)

    monkeypatch.setattr(stripe_provider.StripeProvider, "identity_start", start_while_the_user_cancels)
    started = client.post(URL, {}, format="json")
    assert answers["delete"].status_code == 200
    assert started.status_code == 409 and started.json()["error"]["code"] == "verification_canceled"
    assert "client_secret" not in started.json()
    [session] = fake_stripe.verification_sessions.values()
    row = IdentityVerification.objects.get()
    assert session["status"] == "canceled" and (row.status, row.provider_ref) == ("canceled", session["id"])
    monkeypatch.setattr(stripe_provider.StripeProvider, "identity_start", real)
    start_stripe(client, fake_stripe)  # the user may start again


@pytest.mark.django_db
def test_a_cancel_racing_the_sandbox_start_is_409(client_for, alice, monkeypatch):
    from payments.providers import sandbox

    client = client_for(alice)
    real = sandbox.SandboxProvider.identity_start

    def start_while_the_user_cancels(self, **kwargs):
        assert client.delete(URL).status_code == 200
        return real(self, **kwargs)

    monkeypatch.setattr(sandbox.SandboxProvider, "identity_start", start_while_the_user_cancels)
    answer = verify_sandbox(client)
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "verification_canceled"
    assert (IdentityVerification.objects.get().status, level(alice)) == ("canceled", "unverified")
    assert not VerifiedIdentity.objects.exists()


@pytest.mark.django_db
def test_mark_unverified_in_the_admin_revokes_and_the_user_may_verify_again(
    admin_client, admin_user, client_for, alice, bob
):
    assert verify_sandbox(client_for(alice)).status_code == 201
    services.wallet_verification_level_set(user_id=bob.pk, level="verified")  # by hand: no attempt
    wallets = WalletSettings.objects.filter(user__in=[alice, bob]).values_list("pk", flat=True)
    answer = admin_client.post(
        "/admin/payments/walletsettings/", {"action": "mark_unverified", "_selected_action": list(wallets)}
    )
    assert answer.status_code == 302 and level(alice) == level(bob) == "unverified"
    state = client_for(alice).get(URL).json()
    assert (state["status"], state["verification"]["failure_code"], state["verification_level"]) == (
        "revoked",
        "revoked",
        "unverified",
    )
    row = IdentityVerification.objects.get(user=alice)
    [entry] = audit_entries_for(target=row)
    assert entry.action == "payments.verification.revoke" and entry.actor_id == admin_user.pk
    assert verify_sandbox(client_for(alice)).status_code == 201 and level(alice) == "verified"
    assert verify_sandbox(client_for(bob), number=ID_B).status_code == 201


@pytest.mark.django_db
def test_a_revoke_that_blocks_holds_until_staff_lift_it(admin_client, client_for, alice, bob, carol):
    assert verify_sandbox(client_for(alice)).status_code == 201
    row = IdentityVerification.objects.get(user=alice)
    answer = admin_client.post(
        "/admin/payments/identityverification/", {"action": "revoke_and_block", "_selected_action": [row.pk]}
    )
    assert answer.status_code == 302 and level(alice) == "unverified"
    row.refresh_from_db()
    assert (row.status, row.blocks_user, row.identity.blocked) == ("revoked", True, True)
    # The user sees a code, never staff's note; the note is in the audit log.
    shown = client_for(alice).get(URL).json()["verification"]
    assert (shown["failure_code"], shown["failure_reason"]) == ("revoked_blocked", "")
    assert audit_entries_for(target=row).get().details["block"] is True
    # The same user, whatever the ID: 403 before anything starts.
    for number in (ID_A, ID_B):
        refused = verify_sandbox(client_for(alice), number=number)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "verification_blocked"
    # The same identity on another account: 403, the attempt kept as failed.
    other = verify_sandbox(client_for(bob))
    assert other.status_code == 403 and other.json()["error"]["code"] == "identity_blocked"
    assert client_for(bob).get(URL).json()["verification"]["failure_code"] == "identity_blocked"
    assert level(bob) == "unverified"
    # A plain revoke (unbind) does not block: carol's identity is free at once.
    assert verify_sandbox(client_for(carol), number=ID_B).status_code == 201
    carols = IdentityVerification.objects.get(user=carol, status="verified")
    verification.verification_revoke(verification_id=carols.pk, actor_id=alice.pk, reason="asked to")
    assert verify_sandbox(client_for(carol), number=ID_B).status_code == 201
    # Lifted: both may verify again.
    lifted = admin_client.post(
        "/admin/payments/identityverification/", {"action": "lift_block", "_selected_action": [row.pk]}
    )
    assert lifted.status_code == 302
    row.refresh_from_db()
    assert (row.status, row.blocks_user, row.failure_code, row.identity.blocked) == (
        "revoked",
        False,
        "revoked",
        False,
    )
    assert verify_sandbox(client_for(alice)).status_code == 201
    assert verify_sandbox(client_for(bob)).status_code == 201
    with pytest.raises(ApplicationError) as refused_lift:
        verification.verification_block_lift(verification_id=row.pk, actor_id=carol.pk)
    assert refused_lift.value.code == "not_blocked"


@pytest.mark.django_db
def test_the_metadata_fallback_binds_only_the_same_users_attempt_waiting_for_its_session(
    client_for, api, alice, bob, fake_stripe, settings, django_capture_on_commit_callbacks
):
    client = client_for(alice)
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    assert client.post(URL, {}, format="json").status_code == 503
    failed = IdentityVerification.objects.get()
    assert (failed.status, failed.provider_ref) == ("failed", "")
    settings.STRIPE_API_BASE = fake_stripe.url
    session_id = start_stripe(client, fake_stripe)
    with django_capture_on_commit_callbacks(execute=True):
        deliver(
            api,
            fake_stripe,
            "identity.verification_session.verified",
            fake_stripe.identity_verify(session_id),
        )
    assert level(alice) == "verified"
    # A session Alice never had (another deployment on the same Stripe account...) naming the
    # failed attempt: nothing happens, and no task crashes.
    foreign = stripe.StripeClient("sk_test_fake", base_addresses={"api": fake_stripe.url})
    other = foreign.v1.identity.verification_sessions.create(
        params={"type": "document", "metadata": {"verification_id": str(failed.pk), "user_id": str(alice.pk)}}
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        outcome = deliver(api, fake_stripe, "identity.verification_session.verified",
                          fake_stripe.identity_verify(other.id, number="X9999999")).json()["outcome"]  # fmt: skip
    assert outcome == "unknown_object" and not callbacks
    failed.refresh_from_db()
    assert (failed.status, failed.provider_ref) == ("failed", "")
    # The webhook beating the create call's answer: found by metadata, only with the same user.
    waiting = IdentityVerification.objects.create(user=bob, provider="stripe")
    bobs = foreign.v1.identity.verification_sessions.create(
        params={
            "type": "document",
            "metadata": {"verification_id": str(waiting.pk), "user_id": str(alice.pk)},
        }
    )
    session = fake_stripe.identity_verify(bobs.id, number="B1234567")
    assert deliver(api, fake_stripe, "identity.verification_session.verified", session).json()["outcome"] == (
        "unknown_object"
    )
    session["metadata"]["user_id"] = str(bob.pk)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = deliver(api, fake_stripe, "identity.verification_session.verified", session).json()[
            "outcome"
        ]
    assert outcome == "verification_confirmed" and level(bob) == "verified"
    # A user verified already: a late "verified" of an old attempt changes nothing.
    old = IdentityVerification.objects.create(
        user=alice, provider="stripe", provider_ref=other.id, status="failed"
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        outcome = deliver(api, fake_stripe, "identity.verification_session.verified",
                          fake_stripe.identity_session(other.id)).json()["outcome"]  # fmt: skip
    assert outcome == "already_verified" and not callbacks
    old.refresh_from_db()
    assert old.status == "failed" and old.provider_verified_at is None
    assert IdentityVerification.objects.get(user=alice, status="verified").provider_ref == session_id


@pytest.mark.django_db
def test_one_bad_row_never_stops_the_sweeper(client_for, api, alice, bob, fake_stripe, caplog):
    # Alice's attempt names a provider this deployment no longer has: completing it raises.
    broken = IdentityVerification.objects.create(
        user=alice, provider="retired", provider_ref="vs_gone", provider_verified_at=timezone.now()
    )
    # Bob's: an ordinary lost task.
    bobs = start_stripe(client_for(bob), fake_stripe)
    deliver(api, fake_stripe, "identity.verification_session.verified", fake_stripe.identity_verify(bobs))
    IdentityVerification.objects.filter(status="pending").update(
        provider_verified_at=timezone.now() - timedelta(hours=1)
    )
    assert broken.pk < IdentityVerification.objects.get(user=bob).pk  # the bad row comes first
    with caplog.at_level("ERROR", logger="payments.verification"):
        assert tasks.complete_stale_verifications.delay().get() == 1
    assert level(bob) == "verified"
    assert any(
        r.msg == "payments.verification_sweep_failed" and r.verification_id == broken.pk
        for r in caplog.records
    )


@pytest.mark.django_db
def test_a_chinese_name_read_by_stripe_is_stored_as_the_sandbox_stores_it(
    client_for, api, alice, bob, fake_stripe, django_capture_on_commit_callbacks
):
    for user, (first, last), number in (
        (alice, ("明", "李"), ID_A),
        (bob, ("Jenny", "Rosen"), "D7654321"),
    ):
        session_id = start_stripe(client_for(user), fake_stripe)
        session = fake_stripe.identity_verify(session_id, first_name=first, last_name=last, number=number,
                                              issuing_country="CN", document_type="id_card")  # fmt: skip
        with django_capture_on_commit_callbacks(execute=True):
            deliver(api, fake_stripe, "identity.verification_session.verified", session)
    assert IdentityVerification.objects.get(user=alice).legal_name == "李明"
    assert client_for(alice).get(URL).json()["verification"]["legal_name"] == "*明"
    assert IdentityVerification.objects.get(user=bob).legal_name == "Jenny Rosen"


@pytest.mark.django_db
def test_names_are_nfc_and_take_the_middle_dot_variants(client_for, make_user):
    cases = [
        ("Jose\u0301 Garci\u0301a", "José García"),  # a keyboard sending NFD
        ("阿依古丽\u30fb买买提", "阿依古丽·买买提"),  # katakana middle dot
        ("阿依古丽\u2022买买提", "阿依古丽·买买提"),  # bullet
        ("阿依古丽·买买提", "阿依古丽·买买提"),
        ("สมชาย ใจดี", "สมชาย ใจดี"),  # Thai vowel signs are marks (Mn)
        ("अनिल कुमार", "अनिल कुमार"),  # Devanagari vowel signs (Mc, Mn)
    ]
    for index, (typed, stored) in enumerate(cases):
        user = make_user()
        number = resident_id(f"110105199001{index + 1:02d}123")
        answer = verify_sandbox(client_for(user), name=typed, number=number)
        assert answer.status_code == 201, (typed, answer.json())
        assert IdentityVerification.objects.get(user=user).legal_name == stored
    for bad in ("\u0301abc", "·李明", "李明2"):  # a mark or a dot first, a digit
        answer = verify_sandbox(client_for(make_user()), name=bad)
        assert answer.status_code == 400 and set(answer.json()["error"]["fields"]) == {"legal_name"}


@pytest.mark.django_db
def test_the_owner_gets_the_pending_sessions_secret_again(client_for, alice, bob, fake_stripe):
    client = client_for(alice)
    started = client.post(URL, {}, format="json").json()  # the app never sees this answer
    assert "client_secret" not in client.get(URL).json()  # a plain GET asks Stripe nothing
    resumed = client.get(URL, {"resume": "true"}).json()
    assert (resumed["status"], resumed["client_secret"], resumed["url"]) == (
        "pending",
        started["client_secret"],
        started["url"],
    )
    assert (client_for(bob).get(URL, {"resume": "true"}).json()["client_secret"]) == ""  # not another's
    [session_id] = fake_stripe.verification_sessions
    fake_stripe.identity_verify(session_id)  # no longer waiting for the user
    assert client.get(URL, {"resume": "true"}).json()["client_secret"] == ""


@pytest.mark.django_db
def test_starting_and_resuming_are_throttled_per_user(client_for, alice, bob, fake_stripe, monkeypatch):
    """Stripe bills every Identity session: a user may start (or resume) a few a day; reading the
    state and giving up stay free, and another user is not affected."""
    from rest_framework.throttling import ScopedRateThrottle

    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"identity_verification": "3/day"})
    client = client_for(alice)
    start_stripe(client, fake_stripe)
    assert client.delete(URL).status_code == 200
    start_stripe(client, fake_stripe)
    assert client.get(URL, {"resume": "true"}).status_code == 200
    sessions = len(fake_stripe.verification_sessions)
    for answer in (client.post(URL, {}, format="json"), client.get(URL, {"resume": "true"})):
        assert answer.status_code == 429 and answer.json()["error"]["code"] == "throttled"
    assert len(fake_stripe.verification_sessions) == sessions  # nothing more asked of Stripe
    assert client.get(URL).status_code == 200 and client.delete(URL).status_code == 200
    start_stripe(client_for(bob), fake_stripe)


# --- redaction at Stripe ----------------------------------------------------------------------------

REDACTED = "[redacted]"


def redactions(fake, session_id: str) -> list[dict]:
    path = f"/v1/identity/verification_sessions/{session_id}/redact"
    return [r for r in fake.requests if r["method"] == "POST" and r["path"] == path]


def stripe_client(fake) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_fake", base_addresses={"api": fake.url})


def verified_unredacted(client, api, fake, *, number="D7654321") -> tuple[IdentityVerification, str]:
    """A Stripe attempt verified and stored, whose redaction task was lost (its on-commit
    callbacks never run in the test's transaction)."""
    session_id = start_stripe(client, fake)
    deliver(
        api, fake, "identity.verification_session.verified", fake.identity_verify(session_id, number=number)
    )
    tasks.complete_verification.delay(IdentityVerification.objects.get(provider_ref=session_id).pk)
    row = IdentityVerification.objects.get(provider_ref=session_id)
    assert row.status == "verified" and row.redacted_at is None and not redactions(fake, session_id)
    return row, session_id


@pytest.mark.django_db
def test_a_verified_session_is_redacted_once_its_outputs_are_stored(
    client_for, api, alice, fake_stripe, django_capture_on_commit_callbacks
):
    session_id = start_stripe(client_for(alice), fake_stripe)
    with django_capture_on_commit_callbacks(execute=True):
        deliver(
            api,
            fake_stripe,
            "identity.verification_session.verified",
            fake_stripe.identity_verify(session_id, number="D7654321"),
        )
    row = IdentityVerification.objects.get()
    assert row.status == "verified" and row.redacted_at is not None
    # Read first (the name from the session's outputs, the number from its report), then redacted once.
    calls = [(r["method"], r["path"].split("?")[0]) for r in fake_stripe.requests]
    outputs_read = calls.index(("GET", f"/v1/identity/verification_sessions/{session_id}"))
    report_read = next(
        i for i, (_m, p) in enumerate(calls) if p.startswith("/v1/identity/verification_reports/")
    )
    redacted = calls.index(("POST", f"/v1/identity/verification_sessions/{session_id}/redact"))
    assert outputs_read < redacted and report_read < redacted
    assert len(redactions(fake_stripe, session_id)) == 1
    # Stripe keeps nothing readable any more...
    session = stripe_client(fake_stripe).v1.identity.verification_sessions.retrieve(
        session_id, params={"expand": ["verified_outputs"]}
    )
    assert session.redaction.status == "redacted" and session.metadata.to_dict() == {}
    assert session.verified_outputs.first_name == session.verified_outputs.last_name == REDACTED
    report = stripe_client(fake_stripe).v1.identity.verification_reports.retrieve(
        session.last_verification_report, params={"expand": ["document.number"]}
    )
    assert report.document.number == report.document.first_name == REDACTED
    # ... and what we keep is as it was stored.
    assert (row.legal_name, row.id_type, row.id_number_check) == ("Jenny Rosen", "us_driving_license", "")
    assert row.id_number_hash == verification.identity_hash(
        id_type="us_driving_license", id_number="D7654321"
    )
    assert client_for(alice).get(URL).json()["verification"]["legal_name"] == "***** Rosen"
    assert [e["status"] for e in events_of(alice)] == ["pending", "verified"]  # no event for it


@pytest.mark.django_db
def test_a_failed_attempt_is_redacted_and_keeps_its_reason(
    client_for, api, alice, fake_stripe, django_capture_on_commit_callbacks
):
    client = client_for(alice)
    session_id = start_stripe(client, fake_stripe)
    failed = fake_stripe.identity_requires_input(session_id, code="document_expired", reason="Expired.")
    with django_capture_on_commit_callbacks(execute=True):
        deliver(api, fake_stripe, "identity.verification_session.requires_input", failed)
    row = IdentityVerification.objects.get()
    assert (row.status, row.failure_code) == ("failed", "document_expired") and row.redacted_at
    # Redacting a session that waits for the user cancels it: Stripe's "canceled" that follows
    # changes nothing (the user keeps the reason) and asks Stripe for nothing more.
    at_stripe = fake_stripe.identity_session(session_id)
    assert (at_stripe["status"], at_stripe["redaction"]) == ("canceled", {"status": "redacted"})
    with django_capture_on_commit_callbacks(execute=True):
        outcome = deliver(api, fake_stripe, "identity.verification_session.canceled", at_stripe)
    assert outcome.json()["outcome"] == "stale"
    assert client.get(URL).json()["verification"]["failure_code"] == "document_expired"
    assert len(redactions(fake_stripe, session_id)) == 1
    assert [e["status"] for e in events_of(alice)] == ["pending", "failed"]
    with django_capture_on_commit_callbacks(execute=True):
        second = start_stripe(client, fake_stripe)  # a retry is a new attempt, as always
    assert not redactions(fake_stripe, second) and len(redactions(fake_stripe, session_id)) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("by", ["the_user", "stripe"])
def test_a_canceled_attempt_is_redacted(
    client_for, api, alice, fake_stripe, django_capture_on_commit_callbacks, by
):
    client = client_for(alice)
    session_id = start_stripe(client, fake_stripe)
    with django_capture_on_commit_callbacks(execute=True):
        if by == "the_user":
            assert client.delete(URL).status_code == 200
        else:
            canceled = {**fake_stripe.identity_session(session_id), "status": "canceled"}
            assert (
                deliver(api, fake_stripe, "identity.verification_session.canceled", canceled).status_code
                == 200
            )
    row = IdentityVerification.objects.get()
    assert row.status == "canceled" and row.redacted_at is not None
    assert fake_stripe.identity_session(session_id)["redaction"] == {"status": "redacted"}
    assert len(redactions(fake_stripe, session_id)) == 1


@pytest.mark.django_db
def test_a_superseded_attempt_is_redacted_after_its_cancel(
    client_for, api, alice, fake_stripe, django_capture_on_commit_callbacks
):
    client = client_for(alice)
    first = start_stripe(client, fake_stripe)
    # Failed, and its redaction lost (the callbacks of this delivery never run).
    deliver(
        api,
        fake_stripe,
        "identity.verification_session.requires_input",
        fake_stripe.identity_requires_input(first, code="selfie_face_mismatch", reason="No match."),
    )
    assert IdentityVerification.objects.get(provider_ref=first).redacted_at is None
    with django_capture_on_commit_callbacks(execute=True):
        second = start_stripe(client, fake_stripe)
    old = IdentityVerification.objects.get(provider_ref=first)
    assert (old.status, old.failure_code) == ("canceled", "superseded") and old.redacted_at
    calls = [(r["method"], r["path"]) for r in fake_stripe.requests]
    cancel = calls.index(("POST", f"/v1/identity/verification_sessions/{first}/cancel"))
    redact = calls.index(("POST", f"/v1/identity/verification_sessions/{first}/redact"))
    assert cancel < redact  # canceled first: it can no longer turn verified
    new = IdentityVerification.objects.get(provider_ref=second)
    assert new.status == "pending" and new.redacted_at is None and not redactions(fake_stripe, second)


@pytest.mark.django_db
def test_a_revoked_verification_is_redacted(
    client_for, api, alice, carol, fake_stripe, django_capture_on_commit_callbacks
):
    row, session_id = verified_unredacted(client_for(alice), api, fake_stripe)
    stored = (row.legal_name, row.id_type, row.id_number_hash, row.id_number_check)
    with django_capture_on_commit_callbacks(execute=True):
        verification.verification_revoke(verification_id=row.pk, actor_id=carol.pk, reason="asked to")
    row.refresh_from_db()
    assert row.status == "revoked" and row.redacted_at is not None
    assert (row.legal_name, row.id_type, row.id_number_hash, row.id_number_check) == stored
    assert len(redactions(fake_stripe, session_id)) == 1


@pytest.mark.django_db
def test_stripe_down_during_the_redaction_is_retried_by_the_sweeper(
    client_for, api, alice, fake_stripe, django_capture_on_commit_callbacks
):
    session_id = start_stripe(client_for(alice), fake_stripe)
    fake_stripe.redact_down = True
    with django_capture_on_commit_callbacks(execute=True):
        answer = deliver(
            api,
            fake_stripe,
            "identity.verification_session.verified",
            fake_stripe.identity_verify(session_id),
        )
    assert answer.status_code == 200  # the webhook's commit stands whatever the redaction does
    row = IdentityVerification.objects.get()
    assert row.status == "verified" and row.redacted_at is None and redactions(fake_stripe, session_id)
    assert level(alice) == "verified"
    assert tasks.complete_stale_verifications.delay().get() == 0  # too recent: the task's own retries first
    IdentityVerification.objects.filter(pk=row.pk).update(resolved_at=row.resolved_at - timedelta(minutes=11))
    assert tasks.complete_stale_verifications.delay().get() == 0  # still down: logged, kept for the next run
    assert IdentityVerification.objects.get().redacted_at is None
    fake_stripe.redact_down = False
    assert tasks.complete_stale_verifications.delay().get() == 1
    assert IdentityVerification.objects.get().redacted_at is not None
    assert fake_stripe.identity_session(session_id)["redaction"] == {"status": "redacted"}
    asked = len(redactions(fake_stripe, session_id))
    assert tasks.complete_stale_verifications.delay().get() == 0  # done: never asked again
    assert len(redactions(fake_stripe, session_id)) == asked


@pytest.mark.django_db
def test_the_sweeper_gives_up_a_redaction_after_redact_within(client_for, api, alice, fake_stripe):
    row, session_id = verified_unredacted(client_for(alice), api, fake_stripe)
    IdentityVerification.objects.filter(pk=row.pk).update(
        resolved_at=timezone.now() - verification.REDACT_WITHIN - timedelta(minutes=1)
    )
    assert tasks.complete_stale_verifications.delay().get() == 0 and not redactions(fake_stripe, session_id)


@pytest.mark.django_db
def test_the_redaction_task_run_twice_asks_stripe_once(client_for, api, alice, bob, fake_stripe):
    row, session_id = verified_unredacted(client_for(alice), api, fake_stripe)
    tasks.redact_verification.delay(row.pk)
    row.refresh_from_db()
    first = row.redacted_at
    assert first is not None
    tasks.redact_verification.delay(row.pk)  # a redelivery
    row.refresh_from_db()
    assert row.redacted_at == first and len(redactions(fake_stripe, session_id)) == 1
    # Redacted at Stripe already (a concurrent run won) or unknown to Stripe: done, not an error.
    IdentityVerification.objects.filter(pk=row.pk).update(redacted_at=None)
    assert verification.verification_redact(verification_id=row.pk) is True
    unknown = IdentityVerification.objects.create(
        user=bob, provider="stripe", provider_ref="vs_unknown", status="failed", resolved_at=timezone.now()
    )
    tasks.redact_verification.delay(unknown.pk)
    unknown.refresh_from_db()
    assert unknown.redacted_at is not None
    # A pending attempt (its outputs may still be read) and a missing row: nothing asked.
    pending_id = start_stripe(client_for(bob), fake_stripe)
    tasks.redact_verification.delay(IdentityVerification.objects.get(provider_ref=pending_id).pk)
    tasks.redact_verification.delay(10**9)
    assert not redactions(fake_stripe, pending_id)


@pytest.mark.django_db
def test_a_refused_redaction_is_left_to_the_sweeper(client_for, api, alice, fake_stripe, caplog):
    client = client_for(alice)
    session_id = start_stripe(client, fake_stripe)
    deliver(
        api,
        fake_stripe,
        "identity.verification_session.requires_input",
        fake_stripe.identity_requires_input(session_id, code="document_expired", reason="Expired."),
    )
    fake_stripe.verification_sessions[session_id]["status"] = "processing"  # the user tried again in it
    row = IdentityVerification.objects.get()
    with caplog.at_level("WARNING", logger="payments.verification"):
        tasks.redact_verification.delay(row.pk)
    assert IdentityVerification.objects.get().redacted_at is None
    assert any(r.msg == "payments.verification_redact_refused" for r in caplog.records)
    fake_stripe.verification_sessions[session_id]["status"] = "requires_input"
    IdentityVerification.objects.filter(pk=row.pk).update(resolved_at=timezone.now() - timedelta(minutes=11))
    assert tasks.complete_stale_verifications.delay().get() == 1
    assert IdentityVerification.objects.get().redacted_at is not None


@pytest.mark.django_db
def test_a_redacted_session_is_never_bound(
    client_for, api, alice, fake_stripe, django_capture_on_commit_callbacks
):
    """A late "verified" racing the redaction of a failed attempt: the outputs read back are
    placeholders, so the attempt fails rather than binding "[redacted]" as an identity."""
    session_id = start_stripe(client_for(alice), fake_stripe)
    session = fake_stripe.identity_verify(session_id)
    stripe_client(fake_stripe).v1.identity.verification_sessions.redact(session_id)
    with django_capture_on_commit_callbacks(execute=True):
        deliver(api, fake_stripe, "identity.verification_session.verified", session)
    row = IdentityVerification.objects.get()
    assert (row.status, row.failure_code, row.id_number_hash) == ("failed", "identity_not_verified", "")
    assert row.redacted_at is not None  # Stripe answers a redaction of a redacted session with it
    assert not VerifiedIdentity.objects.exists() and level(alice) == "unverified"


@pytest.mark.django_db
def test_the_sandbox_keeps_nothing_to_redact(client_for, alice, django_capture_on_commit_callbacks):
    from payments.providers.sandbox import SandboxProvider

    with django_capture_on_commit_callbacks(execute=True):
        assert verify_sandbox(client_for(alice)).status_code == 201
    row = IdentityVerification.objects.get()
    assert row.redacted_at is None  # nothing was kept at a provider, nothing is recorded
    IdentityVerification.objects.filter(pk=row.pk).update(resolved_at=timezone.now() - timedelta(hours=1))
    assert tasks.complete_stale_verifications.delay().get() == 0
    assert verification.verification_redact(verification_id=row.pk) is False
    assert SandboxProvider().identity_redact(provider_ref=row.provider_ref) is None


def test_the_sandbox_has_nothing_to_read_back():
    """It verifies or refuses while starting: a status read finds nothing waiting (canceled), and
    there is no result to read later."""
    from payments.providers import ProviderError
    from payments.providers.sandbox import SandboxProvider

    sandbox = SandboxProvider()
    assert sandbox.identity_status(provider_ref="sandbox_vs_1").status == "canceled"
    with pytest.raises(ProviderError):
        sandbox.identity_result(provider_ref="sandbox_vs_1")
