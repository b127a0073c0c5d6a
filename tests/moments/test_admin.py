"""The Moments admin: pages load for staff only; hide, unhide and report review go through services."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from accounts.models import User
from moments import services
from moments.models import Post, Report
from superapp.core.events import events_since
from tests.conftest import befriend

from .conftest import feed_ids, image_upload, publish

pytestmark = pytest.mark.django_db

SINCE_2000 = "__gte=2000-01-01+00%3A00%3A00%2B00%3A00"
# A filter query string valid for each model's list_filter.
FILTERS = {
    "post": "kind__exact=text",
    "report": "status__exact=open",
    "comment": "created_at" + SINCE_2000,
    "like": "created_at" + SINCE_2000,
    "timeline": "created" + SINCE_2000,
    "notification": "kind__exact=like",
    "media": "kind__exact=image",
    "momentsprofile": "visible_days__exact=30",
    "friendsetting": "hide_their_posts__exact=1",
}
MOMENTS_MODELS = sorted(
    (m for m in admin.site._registry if m._meta.app_label == "moments"), key=lambda m: m._meta.model_name
)


@pytest.fixture
def rows(alice, bob, carol):
    """At least one row in every Moments table the admin shows."""
    befriend(alice, bob)
    image = services.media_upload(owner=alice, kind="image", upload=image_upload())
    post = publish(alice, "hello", media_ids=[image.pk], visibility="exclude", user_ids=[bob.pk])
    shared = publish(alice, "shared")
    services.like_add(user=bob, post_id=shared.pk)
    services.comment_create(user=bob, post_id=shared.pk, text="nice")
    services.report_create(reporter=bob, post_id=shared.pk, reason="spam")
    services.moments_settings_update(user=alice, visible_days=30)
    services.friend_setting_update(owner=alice, target_id=bob.pk, hide_their_posts=True)
    return post, shared


@pytest.fixture
def staff_client():
    root = User.objects.create_superuser("root", "pw-root-123", email="root@example.com")
    client = Client()
    client.force_login(root)
    client.user = root
    return client


def test_every_moments_table_is_in_the_admin():
    assert {m._meta.model_name for m in MOMENTS_MODELS} == {
        "post", "report", "comment", "like", "timeline", "notification", "media", "momentsprofile",
        "friendsetting",
    }  # fmt: skip


@pytest.mark.parametrize("model", MOMENTS_MODELS, ids=lambda m: m._meta.model_name)
def test_pages_load_and_search_by_user(model, rows, staff_client, alice):
    opts = model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    assert staff_client.get(changelist).status_code == 200
    for term in (str(alice.pk), "alice", "@nobody"):
        assert staff_client.get(changelist, {"q": term}).status_code == 200
    page = staff_client.get(f"{changelist}?{FILTERS[opts.model_name]}")
    assert page.status_code == 200 and page.context["cl"].result_count >= 1
    obj = model._default_manager.order_by("pk").first()
    assert obj is not None
    change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    assert staff_client.get(change).status_code == 200
    # Read-only: no add page, no delete.
    assert staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add")).status_code == 403


def test_non_staff_cannot_enter(rows, alice):
    client = Client()
    client.force_login(alice)
    response = client.get(reverse("admin:moments_post_changelist"))
    assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))


def test_hide_and_unhide_actions_go_through_the_service(rows, staff_client, client_for, bob, alice):
    _, shared = rows
    url = reverse("admin:moments_post_changelist")
    assert feed_ids(client_for(bob)) == [shared.pk]
    response = staff_client.post(url, {"action": "hide", "_selected_action": [str(shared.pk)]}, follow=True)
    assert response.status_code == 200
    shared.refresh_from_db()
    assert shared.hidden_at is not None
    assert feed_ids(client_for(bob)) == []
    assert Report.objects.get().status == Report.Status.HIDDEN
    assert "moments.post.hidden" in [e["type"] for e in events_since(user_id=alice.pk, since=0)["events"]]
    staff_client.post(url, {"action": "unhide", "_selected_action": [str(shared.pk)]})
    assert Post.objects.get(pk=shared.pk).hidden_at is None
    assert feed_ids(client_for(bob)) == [shared.pk]


def test_report_review_actions(rows, staff_client, client_for, bob):
    _, shared = rows
    report = Report.objects.get()
    url = reverse("admin:moments_report_changelist")
    staff_client.post(url, {"action": "dismiss", "_selected_action": [str(report.pk)]})
    report.refresh_from_db()
    assert report.status == Report.Status.DISMISSED and report.reviewed_by == staff_client.user
    assert Post.objects.get(pk=shared.pk).hidden_at is None
    staff_client.post(url, {"action": "hide_posts", "_selected_action": [str(report.pk)]})
    report.refresh_from_db()
    assert report.status == Report.Status.HIDDEN
    assert Post.objects.get(pk=shared.pk).hidden_at is not None
    assert feed_ids(client_for(bob)) == []


def test_moderation_needs_the_change_permission(rows, make_user):
    from django.contrib.auth.models import Permission

    _, shared = rows
    viewer = make_user(handle="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_post"))
    client = Client()
    client.force_login(viewer)
    url = reverse("admin:moments_post_changelist")
    assert client.get(url).status_code == 200
    client.post(url, {"action": "hide", "_selected_action": [str(shared.pk)]})
    assert Post.objects.get(pk=shared.pk).hidden_at is None
