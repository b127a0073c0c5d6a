"""The audit log: recording, the admin helper, a read-only admin, and the PostgreSQL trigger."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, connection, transaction
from django.test import Client, RequestFactory

from accounts.models import User
from superapp.core.audit import audit_admin_action, audit_entries_for, audit_record, client_ip
from superapp.core.errors import ValidationFailed
from superapp.core.models import AuditLogEntry

pytestmark = pytest.mark.django_db

URL = "/admin/core/auditlogentry/"


@pytest.fixture
def root():
    return User.objects.create_superuser("root", "pw-root-123", email="root@example.com")


@pytest.fixture
def staff(root):
    client = Client()
    client.force_login(root)
    return client


@pytest.fixture
def entry(root, alice):
    return audit_record(
        actor_id=root.id,
        action="accounts.deactivate",
        target=alice,
        details={"reason": "fraud report #12", "amount": 1999},
        ip="203.0.113.7",
    )


def test_record_keeps_who_what_target_and_details(entry, root, alice):
    entry.refresh_from_db()
    assert entry.actor_id == root.id and entry.actor_username == root.get_username()
    assert entry.action == "accounts.deactivate"
    assert entry.target_content_type == ContentType.objects.get_for_model(User)
    assert entry.target_object_id == str(alice.pk) and entry.target_repr == str(alice)
    assert entry.details == {"reason": "fraud report #12", "amount": 1999}
    assert entry.ip == "203.0.113.7" and entry.created_at is not None
    assert list(audit_entries_for(target=alice)) == [entry]


def test_record_by_the_system_and_with_bad_input(alice):
    entry = audit_record(actor_id=None, action="payments.reconcile", target=alice, ip="not an ip")
    assert (entry.actor_id, entry.actor_username, entry.ip, entry.details) == (None, "", None, {})
    with pytest.raises(ValidationFailed) as error:
        audit_record(actor_id=None, action="", target=alice)
    assert "action" in error.value.fields
    with pytest.raises(ValidationFailed) as error:
        audit_record(actor_id=None, action="x", target=User(handle="unsaved"))
    assert "target" in error.value.fields
    with pytest.raises(ValidationFailed) as error:
        audit_record(actor_id=10**9, action="x", target=alice)
    assert "actor_id" in error.value.fields
    assert AuditLogEntry.objects.count() == 1


def test_admin_helper_takes_actor_and_ip_from_the_request(root, alice, settings):
    request = RequestFactory().post("/admin/", REMOTE_ADDR="198.51.100.4", HTTP_X_FORWARDED_FOR="6.6.6.6")
    request.user = root
    entry = audit_admin_action(request, "payments.refund", alice, {"refund_id": 7})
    # No proxy configured: a client-sent X-Forwarded-For is not believed.
    assert (entry.actor_id, entry.ip, entry.details) == (root.id, "198.51.100.4", {"refund_id": 7})
    # Behind one proxy, the address it appended is the client's.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    request = RequestFactory().post(
        "/admin/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.9"
    )
    assert client_ip(request) == "198.51.100.9"


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("", True),
        ("?q=deactivate", True),
        ("?q=root", True),
        ("?q=alice", True),
        ("?action=accounts.deactivate", True),
        ("?q=payments.refund", False),
        ("?action=payments.refund", False),
    ],
)
def test_admin_lists_and_searches(staff, entry, query, found):
    response = staff.get(URL + query)
    assert response.status_code == 200
    assert (f"{URL}{entry.id}/change/" in response.content.decode()) is found


def test_admin_is_read_only(staff, entry):
    page = staff.get(f"{URL}{entry.id}/change/")
    assert page.status_code == 200
    assert "fraud report #12" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    assert staff.get(URL + "add/").status_code == 403
    assert staff.post(URL + "add/", {"action": "forged"}).status_code == 403
    assert staff.post(f"{URL}{entry.id}/change/", {"action": "forged"}).status_code == 403
    assert staff.post(f"{URL}{entry.id}/delete/", {"post": "yes"}).status_code == 403
    response = staff.post(URL, {"action": "delete_selected", "_selected_action": [entry.id], "post": "yes"})
    assert response.status_code in (200, 302)
    entry.refresh_from_db()
    assert entry.action == "accounts.deactivate" and AuditLogEntry.objects.count() == 1


def test_the_database_refuses_update_and_delete(entry):
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        AuditLogEntry.objects.filter(id=entry.id).update(action="forged")
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        AuditLogEntry.objects.filter(id=entry.id).delete()
    with (
        pytest.raises(IntegrityError, match="immutable"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "UPDATE core_auditlogentry SET actor_id = NULL, action = 'x' WHERE id = %s", [entry.id]
        )
    entry.refresh_from_db()
    assert entry.action == "accounts.deactivate"


def test_deleting_the_actor_keeps_the_entry_and_their_name(entry, root):
    username = root.get_username()
    root.delete()
    entry.refresh_from_db()
    assert entry.actor_id is None and entry.actor_username == username
    assert entry.action == "accounts.deactivate"
