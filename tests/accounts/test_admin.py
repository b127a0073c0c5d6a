"""The admin: every registered model's pages load for staff, nobody else gets in, actions use services."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from accounts.models import (
    LoginSession,
    User,
    VerificationCode,
)
from superapp.core.audit import audit_record
from superapp.core.models import Event
from superapp.core.push import services as push_services
from superapp.core.webhooks import webhook_enqueue
from tests.conftest import befriend, login_tokens

pytestmark = pytest.mark.django_db

SINCE_2000 = "created_at__gte=2000-01-01+00%3A00%3A00%2B00%3A00"

# Every model in the admin, with a search term and a filter query string valid for it.
SEARCH_AND_FILTER = {
    "accounts.user": ("alice", "is_verified__exact=1"),
    "accounts.verificationcode": ("alice", "state=open"),
    "accounts.loginsession": ("alice", "state=active"),
    "accounts.friendrequest": ("carol", "status__exact=pending"),
    "accounts.friendship": ("bob", "source__exact=search"),
    "accounts.contacttag": ("family", SINCE_2000),
    "accounts.block": ("carol", SINCE_2000),
    "core.event": ("alice", SINCE_2000),
    "core.userstream": ("alice", ""),
    "core.pushdevice": ("alice", "platform__exact=ios"),
    "core.webhookdelivery": ("hooks.example", "status__exact=pending"),
    "core.auditlogentry": ("alice", "action=accounts.block_review"),
    "auth.group": ("staff", ""),
    "axes.accessattempt": ("alice", ""),
    "axes.accessfailurelog": ("alice", ""),
    "axes.accesslog": ("alice", ""),
}


@pytest.fixture
def rows(alice, bob, carol):
    """At least one row in every table the admin shows."""
    alice.avatar_thumb.save("alice.jpg", ContentFile(b"\xff\xd8\xff"), save=True)
    befriend(alice, bob)
    services.tag_create(owner=alice, name="family", member_ids=[bob.pk])
    services.friend_request_send(from_user=carol, to_user_id=alice.pk, note="hi")
    services.block_add(user=bob, target_id=carol.pk)
    services.user_register(password="a long enough pw", display_name="Dan", email="dan@example.com")
    VerificationCode.objects.create(
        user=alice,
        channel="email",
        destination=alice.email,
        code_hash="nonce$secrethash",
        expires_at=timezone.now() + timezone.timedelta(minutes=5),
    )
    login_tokens(alice)
    push_services.device_register(user=alice, platform="ios", token="ab" * 32)
    # A failed login fills django-axes' tables.
    APIClient().post("/api/v1/auth/login", {"login": "alice", "password": "wrong"}, format="json")
    Group.objects.create(name="staff")
    webhook_enqueue(
        url="https://hooks.example/notify",
        event_type="test.event",
        payload={"n": 1},
        secret="whsec_admin_test",
        dedup_key="admin-test",
    )
    audit_record(actor_id=alice.pk, action="accounts.block_review", target=carol)
    assert Event.objects.exists()


@pytest.fixture
def staff_client(make_user):
    admin_user = User.objects.create_superuser("root", "pw-root-123", email="root@example.com")
    client = Client()
    client.force_login(admin_user)
    return client


# This file covers the admin of accounts, core and the libraries; each other app tests its own.
COVERED_APPS = {"accounts", "core", "auth", "axes"}


def _registered():
    return sorted(
        (m for m in admin.site._registry if m._meta.app_label in COVERED_APPS),
        key=lambda m: m._meta.label_lower,
    )


def test_every_model_listed_here_is_registered_and_vice_versa():
    registered = {m._meta.label_lower for m in _registered()}
    accounts_models = {
        f"accounts.{m._meta.model_name}" for m in admin.site._registry if m._meta.app_label == "accounts"
    }
    assert accounts_models == {
        "accounts.user",
        "accounts.verificationcode",
        "accounts.loginsession",
        "accounts.friendrequest",
        "accounts.friendship",
        "accounts.contacttag",
        "accounts.block",
    }
    assert registered == set(SEARCH_AND_FILTER)


@pytest.mark.parametrize("model", _registered(), ids=lambda m: m._meta.label_lower)
def test_changelist_search_filter_and_change_page_load(model, rows, staff_client):
    opts = model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    response = staff_client.get(changelist)
    assert response.status_code == 200
    term, filter_query = SEARCH_AND_FILTER[opts.label_lower]
    response = staff_client.get(changelist, {"q": term})
    assert response.status_code == 200
    if filter_query:
        response = staff_client.get(f"{changelist}?{filter_query}")
        assert response.status_code == 200
    obj = model._default_manager.order_by("pk").first()
    if obj is not None:
        change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        assert staff_client.get(change).status_code == 200


def test_searches_find_the_right_rows(rows, staff_client, alice):
    page = staff_client.get(reverse("admin:accounts_user_changelist"), {"q": alice.email})
    assert page.context["cl"].result_count == 1
    page = staff_client.get(reverse("admin:core_event_changelist"), {"q": str(alice.pk)})
    assert {e.user_id for e in page.context["cl"].result_list} == {alice.pk}
    session = LoginSession.objects.filter(user=alice).first()
    page = staff_client.get(reverse("admin:accounts_loginsession_changelist"), {"q": str(session.pk)})
    assert list(page.context["cl"].result_list) == [session]


def test_user_list_shows_avatar_thumbnail(rows, staff_client, alice):
    page = staff_client.get(reverse("admin:accounts_user_changelist"))
    assert f'src="{alice.avatar_thumb.url}"'.encode() in page.content
    page = staff_client.get(reverse("admin:accounts_user_change", args=[alice.pk]))
    assert f'src="{alice.avatar_thumb.url}"'.encode() in page.content


def test_verification_code_pages_never_show_the_hash(rows, staff_client):
    code = VerificationCode.objects.get(code_hash="nonce$secrethash")
    for url in (
        reverse("admin:accounts_verificationcode_changelist"),
        reverse("admin:accounts_verificationcode_change", args=[code.pk]),
    ):
        page = staff_client.get(url)
        assert page.status_code == 200
        assert b"secrethash" not in page.content
        assert b"code_hash" not in page.content


def test_read_only_models_cannot_be_edited(rows, staff_client):
    code = VerificationCode.objects.first()
    url = reverse("admin:accounts_verificationcode_change", args=[code.pk])
    staff_client.post(url, {"destination": "evil@example.com", "attempts": 0})
    code.refresh_from_db()
    assert code.destination != "evil@example.com"
    assert staff_client.get(reverse("admin:accounts_friendship_add")).status_code == 403


@pytest.mark.parametrize("who", ["anonymous", "non_staff"])
def test_non_staff_is_redirected_to_login(who, rows, alice):
    client = Client()
    if who == "non_staff":
        client.force_login(alice)
    for url in (
        reverse("admin:index"),
        reverse("admin:accounts_user_changelist"),
        reverse("admin:accounts_user_change", args=[alice.pk]),
        reverse("admin:accounts_loginsession_changelist"),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))


def test_revoke_action_revokes_through_the_service(
    rows, staff_client, alice, django_capture_on_commit_callbacks
):
    open_session = LoginSession.objects.filter(user=alice, revoked_at__isnull=True).first()
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:accounts_loginsession_changelist"),
            {"action": "revoke", "_selected_action": [str(open_session.pk)]},
            follow=True,
        )
    assert response.status_code == 200
    open_session.refresh_from_db()
    assert open_session.revoked_at is not None
    assert open_session.revoke_reason == "admin"
    # The service told the user's devices, as a revoke from the app does.
    assert Event.objects.filter(user=alice, type="account.session.revoked").exists()
    assert "1 session revoked." in [str(m) for m in response.context["messages"]]


def test_revoke_needs_the_change_permission(rows, alice, make_user):
    from django.contrib.auth.models import Permission

    viewer = make_user(handle="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_loginsession"))
    client = Client()
    client.force_login(viewer)
    url = reverse("admin:accounts_loginsession_changelist")
    assert client.get(url).status_code == 200
    session = LoginSession.objects.filter(user=alice).first()
    client.post(url, {"action": "revoke", "_selected_action": [str(session.pk)]})
    session.refresh_from_db()
    assert session.revoked_at is None


def test_end_all_sessions_action(rows, staff_client, alice):
    login_tokens(alice)
    push_services.device_register(user=alice, platform="ios", token="ab" * 32)
    assert LoginSession.objects.filter(user=alice, revoked_at__isnull=True).count() == 2
    staff_client.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "end_all_sessions", "_selected_action": [str(alice.pk)]},
    )
    assert not LoginSession.objects.filter(user=alice, revoked_at__isnull=True).exists()


def test_add_user_goes_through_the_service(staff_client):
    response = staff_client.post(
        reverse("admin:accounts_user_add"),
        {
            "handle": "NewUser",
            "display_name": "New",
            "phone": "",
            "email": "New@Example.com",
            "password1": "a long enough pw",
            "password2": "a long enough pw",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    user = User.objects.get(handle="newuser")
    assert user.email == "new@example.com"
    assert user.is_verified and user.check_password("a long enough pw")
    assert response.url == reverse("admin:accounts_user_change", args=[user.pk])


def test_add_user_needs_phone_or_email_and_a_valid_handle(staff_client):
    response = staff_client.post(
        reverse("admin:accounts_user_add"),
        {
            "handle": "1bad",
            "display_name": "X",
            "password1": "a long enough pw",
            "password2": "a long enough pw",
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "handle" in errors
    response = staff_client.post(
        reverse("admin:accounts_user_add"),
        {
            "handle": "good_one",
            "display_name": "X",
            "password1": "a long enough pw",
            "password2": "a long enough pw",
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors()
    assert not User.objects.filter(handle="good_one").exists()


def test_staff_can_deactivate_but_not_rewrite_a_profile(rows, staff_client, alice):
    url = reverse("admin:accounts_user_change", args=[alice.pk])
    response = staff_client.post(url, {"display_name": "Hacked", "is_active": "", "is_staff": ""})
    assert response.status_code == 302, response.context["adminform"].form.errors
    alice.refresh_from_db()
    assert alice.is_active is False
    assert alice.display_name != "Hacked"
    # Turning an account off signs it out everywhere.
    assert not LoginSession.objects.filter(user=alice, revoked_at__isnull=True).exists()


@pytest.mark.parametrize("login", ["root", "root@example.com"])
def test_staff_logs_in_through_the_admin_login_form(login):
    User.objects.create_superuser("root", "pw-root-123", email="root@example.com")
    client = Client()
    response = client.post(reverse("admin:login"), {"username": login, "password": "pw-root-123"})
    assert response.status_code == 302, response.context["form"].errors
    assert client.get(reverse("admin:accounts_user_changelist")).status_code == 200


def test_admin_login_form_refuses_wrong_passwords_and_non_staff(alice):
    from tests.conftest import PASSWORD

    for login, password in (("alice", PASSWORD), ("root", "wrong")):
        response = Client().post(reverse("admin:login"), {"username": login, "password": password})
        assert response.status_code == 200
        assert response.context["form"].errors


def test_password_change_page_loads_and_sets_the_password(rows, staff_client, alice):
    url = reverse("admin:auth_user_password_change", args=[alice.pk])
    assert staff_client.get(url).status_code == 200
    response = staff_client.post(url, {"password1": "brand new secret 1", "password2": "brand new secret 1"})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("brand new secret 1")
    # A password set by staff (account recovery) ends the sessions opened with the old one.
    assert not LoginSession.objects.filter(user=alice, revoked_at__isnull=True).exists()


def test_users_are_deactivated_not_deleted(rows, staff_client, alice):
    assert staff_client.get(reverse("admin:accounts_user_delete", args=[alice.pk])).status_code == 403
    assert User.objects.filter(pk=alice.pk).exists()
