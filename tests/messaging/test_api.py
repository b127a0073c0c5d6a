"""The messaging REST API: success, bad input, and someone else's conversation (404) for each
endpoint; query counts of the list, history and search."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging import services
from messaging.models import Member, Message
from superapp.core.models import Event
from tests.conftest import befriend
from tests.core.test_errors import assert_error

from .conftest import direct, group, image_upload, send

pytestmark = pytest.mark.django_db


def test_send_over_rest_then_retry(client_for, alice, bob):
    befriend(alice, bob)
    client = client_for(alice)
    body = {"to_user_id": bob.pk, "client_msg_id": "r1", "kind": "text", "text": "hi"}
    first = client.post("/api/v1/messaging/messages", body, format="json")
    assert first.status_code == 201, first.content
    conv_id = first.json()["message"]["conversation_id"]
    again = client.post("/api/v1/messaging/messages", body, format="json")
    assert again.status_code == 200 and again.json()["message"]["id"] == first.json()["message"]["id"]
    assert again.json()["created"] is False
    second = client.post(f"/api/v1/messaging/conversations/{conv_id}/messages",
                         {"client_msg_id": "r2", "kind": "text", "text": "again"}, format="json")  # fmt: skip
    assert second.status_code == 201 and second.json()["message"]["seq"] == 2


@pytest.mark.parametrize(
    "body",
    [
        {"client_msg_id": "x", "kind": "text", "text": "x" * 4001},
        {"client_msg_id": "x", "kind": "nope", "text": "x"},
        {"client_msg_id": "x", "kind": "text"},
        {"kind": "text", "text": "x"},
        {"client_msg_id": "x", "kind": "text", "text": "x", "reply_to_seq": 0},
        {"client_msg_id": "x", "kind": "text", "text": "x", "reply_to_seq": 50},
        {"client_msg_id": "x", "kind": "text", "text": "x", "mentions": "all"},
    ],
)
def test_send_bad_input_is_400(client_for, alice, bob, body):
    conv = direct(alice, bob)
    response = client_for(alice).post(
        f"/api/v1/messaging/conversations/{conv.pk}/messages", body, format="json"
    )
    assert_error(response, 400)
    assert Message.objects.count() == 1


def test_send_needs_exactly_one_target(client_for, alice, bob):
    conv = direct(alice, bob)
    body = {"client_msg_id": "x", "kind": "text", "text": "x"}
    client = client_for(alice)
    assert_error(client.post("/api/v1/messaging/messages", body, format="json"), 400)
    assert_error(
        client.post(
            "/api/v1/messaging/messages",
            {**body, "conversation_id": conv.pk, "to_user_id": bob.pk},
            format="json",
        ),
        400,
    )


def test_conversation_list_has_last_message_unread_and_mentions(client_for, alice, bob, carol):
    d = direct(alice, bob)
    g = group(carol, alice, bob, name="trip")
    send(bob, d, text="one")
    send(bob, d, text="two")
    send(carol, g, text="@alice look", mentions=[alice.pk])
    client = client_for(alice)
    with CaptureQueriesContext(connection) as queries:
        body = client.get("/api/v1/messaging/conversations").json()
    # session+user, page, last messages, direct peers, the hidden messages among the unread
    assert len(queries) == 5
    items = body["results"]
    assert [i["conversation"]["id"] for i in items] == [g.pk, d.pk]  # most recent activity first
    trip, chat = items
    assert trip["conversation"]["name"] == "trip" and trip["mentioned"] is True
    assert trip["unread_count"] == 2 and trip["last_message"]["text"] == "@alice look"
    assert chat["peer"]["handle"] == "bob" and chat["unread_count"] == 2 and chat["mentioned"] is False
    assert chat["last_message"]["text"] == "two"
    client.post(f"/api/v1/messaging/conversations/{d.pk}/read", {"seq": 3}, format="json")
    assert client.get(f"/api/v1/messaging/conversations/{d.pk}").json()["unread_count"] == 0


def test_conversation_list_query_count_does_not_grow(client_for, alice, make_user):
    for _ in range(6):
        other = make_user()
        direct(alice, other)
        group(alice, other)
    client = client_for(alice)
    with CaptureQueriesContext(connection) as queries:
        body = client.get("/api/v1/messaging/conversations").json()
    assert len(body["results"]) == 12 and len(queries) == 4


def test_history_pages_by_sequence_both_ways(client_for, alice, bob):
    conv = direct(alice, bob)
    for i in range(9):
        send(bob, conv, text=f"m{i}")
    client = client_for(alice)
    url = f"/api/v1/messaging/conversations/{conv.pk}/messages"
    with CaptureQueriesContext(connection) as queries:
        newest = client.get(url, {"limit": 4}).json()
    assert len(queries) == 3  # session+user, membership, page
    assert [m["seq"] for m in newest["messages"]] == [7, 8, 9, 10] and newest["has_more"]
    older = client.get(url, {"before": 7, "limit": 4}).json()
    assert [m["seq"] for m in older["messages"]] == [3, 4, 5, 6] and older["has_more"]
    oldest = client.get(url, {"before": 3, "limit": 4}).json()
    assert [m["seq"] for m in oldest["messages"]] == [1, 2] and not oldest["has_more"]
    forward = client.get(url, {"after": 2, "limit": 3}).json()
    assert [m["seq"] for m in forward["messages"]] == [3, 4, 5] and forward["has_more"]
    for bad in (
        {"before": 0},
        {"before": "x"},
        {"after": -1},
        {"limit": 0},
        {"limit": 1000},
        {"before": 5, "after": 1},
    ):
        assert_error(client.get(url, bad), 400)


def test_history_hides_what_i_deleted_and_blanks_recalled(client_for, alice, bob):
    conv = direct(alice, bob)
    send(bob, conv, text="secret")
    send(bob, conv, text="oops")
    client = client_for(alice)
    assert client.delete(f"/api/v1/messaging/conversations/{conv.pk}/messages/2").status_code == 204
    services.message_recall(user_id=bob.pk, conversation_id=conv.pk, seq=3)
    mine = client.get(f"/api/v1/messaging/conversations/{conv.pk}/messages").json()["messages"]
    assert [m["seq"] for m in mine] == [1, 3]
    assert mine[1]["recalled"] is True and mine[1]["text"] == "" and mine[1]["content"] == {}
    theirs = client_for(bob).get(f"/api/v1/messaging/conversations/{conv.pk}/messages").json()["messages"]
    assert [m["seq"] for m in theirs] == [1, 2, 3]
    assert Message.objects.get(seq=3).text == ""  # erased from the row, not only hidden
    assert client.get(f"/api/v1/messaging/conversations/{conv.pk}/messages/2").status_code == 404


def test_recall_rules(client_for, alice, bob, settings):
    conv = direct(alice, bob)
    send(bob, conv, text="bob's")
    assert_error(
        client_for(alice).post(f"/api/v1/messaging/conversations/{conv.pk}/messages/2/recall"),
        403,
        "recall_forbidden",
    )
    Message.objects.filter(seq=1).update(created_at=Message.objects.get(seq=1).created_at.replace(year=2000))
    assert_error(
        client_for(alice).post(f"/api/v1/messaging/conversations/{conv.pk}/messages/1/recall"),
        403,
        "recall_expired",
    )
    ok = client_for(bob).post(f"/api/v1/messaging/conversations/{conv.pk}/messages/2/recall")
    assert ok.status_code == 200 and ok.json()["recalled"] is True
    again = client_for(bob).post(f"/api/v1/messaging/conversations/{conv.pk}/messages/2/recall")
    assert again.status_code == 200
    assert Event.objects.filter(type="message.recalled").count() == 2  # once, to both members
    assert_error(client_for(bob).post(f"/api/v1/messaging/conversations/{conv.pk}/messages/9/recall"), 404)


def test_group_admins_recall_members_messages(alice, bob, carol):
    conv = group(alice, bob, carol)
    msg = send(carol, conv, text="spam")
    Message.objects.filter(pk=msg.pk).update(created_at=msg.created_at.replace(year=2000))
    services.group_set_role(user_id=alice.pk, conversation_id=conv.pk, target_id=bob.pk, role="admin")
    assert services.message_recall(user_id=bob.pk, conversation_id=conv.pk, seq=msg.seq).recalled
    owners = send(alice, conv, text="owner's")
    from superapp.core.errors import Forbidden

    with pytest.raises(Forbidden):
        services.message_recall(user_id=bob.pk, conversation_id=conv.pk, seq=owners.seq)


def test_forward(client_for, alice, bob, carol):
    one = direct(alice, bob)
    two = direct(alice, carol)
    send(bob, one, kind="location", content={"latitude": 1, "longitude": 2})
    client = client_for(alice)
    body = {
        "from_conversation_id": one.pk,
        "seqs": [1, 2],
        "to_conversation_ids": [two.pk],
        "client_msg_id": "f1",
    }
    response = client.post("/api/v1/messaging/forward", body, format="json")
    assert response.status_code == 201, response.content
    copies = response.json()["messages"]
    assert [(m["kind"], m["forwarded"], m["seq"]) for m in copies] == [
        ("text", True, 2),
        ("location", True, 3),
    ]
    again = client.post("/api/v1/messaging/forward", body, format="json")
    assert [m["id"] for m in again.json()["messages"]] == [m["id"] for m in copies]
    assert_error(
        client.post(
            "/api/v1/messaging/forward", {**body, "client_msg_id": "f2", "seqs": [99]}, format="json"
        ),
        400,
    )
    assert_error(
        client_for(carol).post("/api/v1/messaging/forward", {**body, "client_msg_id": "f3"}, format="json"),
        404,
    )
    three = direct(bob, carol)
    assert_error(
        client.post(
            "/api/v1/messaging/forward",
            {**body, "client_msg_id": "f4", "to_conversation_ids": [three.pk]},
            format="json",
        ),
        404,
    )


def test_read_mark_rules(client_for, alice, bob):
    conv = direct(alice, bob)
    client = client_for(bob)
    url = f"/api/v1/messaging/conversations/{conv.pk}/read"
    assert client.post(url, {"seq": 1}, format="json").json() == {
        "conversation_id": conv.pk,
        "last_read_seq": 1,
    }
    assert_error(client.post(url, {"seq": 2}, format="json"), 400, "bad_seq")
    assert_error(client.post(url, {"seq": 0}, format="json"), 400)
    assert_error(client.post(url, {}, format="json"), 400)
    assert client.post(url, {"seq": 1}, format="json").status_code == 200  # again: no new event
    assert Event.objects.filter(type="conversation.read").count() == 2


def test_reading_the_last_message_i_can_see_leaves_nothing_unread(client_for, alice, bob):
    """Messages I deleted for myself after the one I read do not stay unread (unread counts to
    the last seq); a message I can still see does."""
    conv = direct(alice, bob)  # seq 1
    for n in range(4):
        send(alice, conv, text=f"m{n}")  # seq 2-5
    services.message_hide(user_id=bob.pk, conversation_id=conv.pk, seq=5)
    services.message_hide(user_id=bob.pk, conversation_id=conv.pk, seq=4)
    client = client_for(bob)
    url = f"/api/v1/messaging/conversations/{conv.pk}/read"
    assert client.post(url, {"seq": 2}, format="json").json()["last_read_seq"] == 2  # seq 3 unseen
    # Unread: seq 3 only (4 and 5 are hidden from me), in the list as in the conversation.
    assert client.get(f"/api/v1/messaging/conversations/{conv.pk}").json()["unread_count"] == 1
    listed = client.get("/api/v1/messaging/conversations").json()["results"]
    assert [(i["conversation"]["id"], i["unread_count"]) for i in listed] == [(conv.pk, 1)]
    assert client.post(url, {"seq": 3}, format="json").json()["last_read_seq"] == 5
    assert client.get(f"/api/v1/messaging/conversations/{conv.pk}").json()["unread_count"] == 0
    receipt = Event.objects.filter(user=alice, type="conversation.read").order_by("-seq").first()
    assert receipt.data["last_read_seq"] == 5  # the peer's receipt says the same


def test_search_my_conversations_only(client_for, alice, bob, carol):
    mine = direct(alice, bob)
    other = direct(bob, carol)
    send(bob, mine, text="Meet at the Blue Bottle cafe")
    send(bob, mine, text="我们明天去北京吃烤鸭")
    send(carol, other, text="blue bottle is mine only")
    client = client_for(alice)
    with CaptureQueriesContext(connection) as queries:
        found = client.get("/api/v1/messaging/search", {"q": "blue BOTTLE"}).json()["results"]
    assert len(queries) == 2
    assert [m["text"] for m in found] == ["Meet at the Blue Bottle cafe"]
    assert [m["seq"] for m in client.get("/api/v1/messaging/search", {"q": "北京"}).json()["results"]] == [3]
    assert client.get("/api/v1/messaging/search", {"q": "京北"}).json()["results"] == []
    assert client.get("/api/v1/messaging/search", {"q": "cafe", "conversation_id": mine.pk}).json()["results"]
    services.message_recall(user_id=bob.pk, conversation_id=mine.pk, seq=2)
    assert client.get("/api/v1/messaging/search", {"q": "cafe"}).json()["results"] == []
    assert_error(client.get("/api/v1/messaging/search", {"q": "x", "conversation_id": other.pk}), 404)
    assert_error(client.get("/api/v1/messaging/search"), 400)
    assert_error(client.get("/api/v1/messaging/search", {"q": "   "}), 400)


def test_settings_and_presence(client_for, alice, bob):
    client = client_for(alice)
    assert client.get("/api/v1/messaging/settings").json() == {
        "show_preview": True, "allow_strangers": False, "presence_visibility": "friends"}  # fmt: skip
    changed = client.patch("/api/v1/messaging/settings", {"show_preview": False}, format="json")
    assert changed.json()["show_preview"] is False
    assert_error(
        client.patch("/api/v1/messaging/settings", {"presence_visibility": "aliens"}, format="json"), 400
    )
    befriend(alice, bob)
    got = client_for(bob).get("/api/v1/messaging/presence", {"user_ids": f"{alice.pk}"}).json()
    assert got == {"presence": [{"user_id": alice.pk, "online": False, "last_seen_at": None}]}
    client.patch("/api/v1/messaging/settings", {"presence_visibility": "nobody"}, format="json")
    got = client_for(bob).get("/api/v1/messaging/presence", {"user_ids": f"{alice.pk}"}).json()
    assert got["presence"][0]["online"] is None
    assert_error(client.get("/api/v1/messaging/presence", {"user_ids": "a,b"}), 400)


def test_media_upload_then_send(client_for, alice, bob, tmp_path):
    conv = direct(alice, bob)
    client = client_for(alice)
    up = client.post("/api/v1/messaging/media", {"kind": "image", "file": image_upload()}, format="multipart")
    assert up.status_code == 201, up.content
    media = up.json()
    assert media["width"] == 64 and media["thumb_url"] and media["mime"] == "image/jpeg"
    sent = client.post(f"/api/v1/messaging/conversations/{conv.pk}/messages",
                       {"client_msg_id": "img", "kind": "image", "content": {"media_id": media["media_id"]}}, format="json")  # fmt: skip
    assert sent.status_code == 201, sent.content
    assert sent.json()["message"]["content"]["url"] == media["url"]
    # Someone else's upload cannot be sent.
    stolen = client_for(bob).post(f"/api/v1/messaging/conversations/{conv.pk}/messages",
                                  {"client_msg_id": "st", "kind": "image", "content": {"media_id": media["media_id"]}}, format="json")  # fmt: skip
    assert_error(stolen, 400, "media_not_found")
    wrong_kind = client.post(f"/api/v1/messaging/conversations/{conv.pk}/messages",
                             {"client_msg_id": "wk", "kind": "video", "content": {"media_id": media["media_id"]}}, format="json")  # fmt: skip
    assert_error(wrong_kind, 400, "media_kind_mismatch")


def test_media_bad_files_are_400(client_for, alice):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = client_for(alice)

    def up(**data):
        return client.post("/api/v1/messaging/media", data, format="multipart")

    assert_error(up(kind="image", file=SimpleUploadedFile("x.jpg", b"not an image")), 400, "invalid_image")
    assert_error(
        up(kind="video", file=SimpleUploadedFile("x.mp4", b"<html>hi</html>" * 10)),
        400,
        "unsupported_media_type",
    )
    assert_error(
        up(kind="voice", file=SimpleUploadedFile("x.ogg", b"OggS" + b"\0" * 60)), 400, "invalid_media"
    )  # no duration
    assert_error(up(kind="voice", file=SimpleUploadedFile("x.ogg", b"OggS" + b"\0" * 60), duration=61), 400)
    assert_error(up(kind="laser", file=SimpleUploadedFile("x", b"1")), 400)
    assert_error(up(kind="file", file=SimpleUploadedFile("x", b"")), 400)
    ok = up(kind="voice", file=SimpleUploadedFile("v.ogg", b"OggS" + b"\0" * 60), duration=7)
    assert ok.status_code == 201 and ok.json()["duration"] == 7 and ok.json()["mime"] == "audio/ogg"
    page = up(kind="file", file=SimpleUploadedFile("evil.html", b"<script>alert(1)</script>"))
    assert (
        page.status_code == 201 and page.json()["url"].endswith(".bin") and page.json()["name"] == "evil.html"
    )
    mp4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64
    assert up(kind="video", file=SimpleUploadedFile("c.mp4", mp4)).json()["mime"] == "video/mp4"


def test_image_gps_is_stripped(client_for, alice):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x8825] = {2: (1.0, 2.0, 3.0)}  # GPSInfo
    Image.new("RGB", (40, 30), "red").save(buffer, format="JPEG", exif=exif)
    from django.core.files.uploadedfile import SimpleUploadedFile

    up = client_for(alice).post(
        "/api/v1/messaging/media",
        {"kind": "image", "file": SimpleUploadedFile("g.jpg", buffer.getvalue())},
        format="multipart",
    )
    assert up.status_code == 201
    from messaging.models import Attachment

    with Attachment.objects.get().file.open("rb") as f:
        assert not Image.open(f).getexif()


# --- someone else's conversation: 404 everywhere -------------------------------------------


def _endpoints(conv_id, other_id):
    base = f"/api/v1/messaging/conversations/{conv_id}"
    return [
        ("get", base, None),
        ("patch", base, {"name": "x"}),
        ("delete", base, None),
        ("patch", f"{base}/settings", {"muted": True}),
        ("post", f"{base}/read", {"seq": 1}),
        ("get", f"{base}/messages", None),
        ("post", f"{base}/messages", {"client_msg_id": "z", "kind": "text", "text": "x"}),
        ("get", f"{base}/messages/1", None),
        ("delete", f"{base}/messages/1", None),
        ("post", f"{base}/messages/1/recall", None),
        ("get", f"{base}/members", None),
        ("post", f"{base}/members", {"user_ids": [other_id]}),
        ("patch", f"{base}/members/{other_id}", {"role": "admin"}),
        ("delete", f"{base}/members/{other_id}", None),
        ("post", f"{base}/transfer", {"user_id": other_id}),
        ("post", f"{base}/invite-link", {}),
        ("delete", f"{base}/invite-link", None),
        ("get", f"{base}/invite-qr.png", None),
        ("get", f"{base}/join-requests", None),
        ("get", f"/api/v1/messaging/search?q=hello&conversation_id={conv_id}", None),
    ]


@pytest.mark.parametrize("index", range(20))
def test_non_members_get_404_from_every_conversation_endpoint(client_for, alice, bob, carol, index):
    conv = group(alice, bob)
    send(alice, conv, text="hello")
    method, url, body = _endpoints(conv.pk, bob.pk)[index]
    before = (
        Message.objects.count(),
        Member.objects.filter(left_at__isnull=True).count(),
        Event.objects.count(),
    )
    client = client_for(carol)
    response = (
        getattr(client, method)(url, body, format="json")
        if body is not None
        else getattr(client, method)(url)
    )
    assert_error(response, 404)
    assert (
        Message.objects.count(),
        Member.objects.filter(left_at__isnull=True).count(),
        Event.objects.count(),
    ) == before


def test_former_members_lose_access(client_for, alice, bob):
    conv = group(alice, bob)
    services.group_remove_member(user_id=alice.pk, conversation_id=conv.pk, target_id=bob.pk)
    assert_error(client_for(bob).get(f"/api/v1/messaging/conversations/{conv.pk}/messages"), 404)


def test_unauthenticated_is_401(api):
    assert_error(api.get("/api/v1/messaging/conversations"), 401)
