"""Recalled media becomes unreachable: the upload's files and row are deleted after the recall
commits, unless a message that is not recalled (a forwarded copy, the same upload sent twice)
still carries it. Sends and forwards racing the purge, on PostgreSQL with threads."""

from __future__ import annotations

import threading
from functools import partial

import pytest
from django.core.files.storage import default_storage
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from messaging import services, tasks
from messaging.models import Attachment, Message
from messaging.services import media
from messaging.services import messages as message_services
from superapp.core.errors import ValidationFailed
from tests.threads import run_together

from .conftest import direct, image_upload, send

pytestmark = pytest.mark.django_db(transaction=True)


def upload(user) -> Attachment:
    return services.attachment_upload(owner_id=user.pk, kind="image", upload=image_upload())


def send_image(sender, conversation, att: Attachment) -> Message:
    return send(sender, conversation, kind="image", content={"media_id": str(att.pk)})


def recall(user, msg: Message) -> Message:
    return services.message_recall(user_id=user.pk, conversation_id=msg.conversation_id, seq=msg.seq)


def files_of(att: Attachment) -> list[str]:
    names = [att.file.name, att.thumb.name]
    assert all(names)
    return names


def on_disk(names: list[str]) -> list[bool]:
    return [default_storage.exists(name) for name in names]


def test_recall_deletes_the_files_and_the_row(client_for, alice, bob):
    conv = direct(alice, bob)
    client = client_for(alice)
    up = client.post("/api/v1/messaging/media", {"kind": "image", "file": image_upload()}, format="multipart")
    media_id = up.json()["media_id"]
    names = files_of(Attachment.objects.get(pk=media_id))
    sent = client.post(f"/api/v1/messaging/conversations/{conv.pk}/messages",
                       {"client_msg_id": "img", "kind": "image", "content": {"media_id": media_id}}, format="json")  # fmt: skip
    assert sent.status_code == 201, sent.content
    assert on_disk(names) == [True, True]
    seq = sent.json()["message"]["seq"]
    assert client.post(f"/api/v1/messaging/conversations/{conv.pk}/messages/{seq}/recall").status_code == 200
    assert on_disk(names) == [False, False]
    assert not Attachment.objects.filter(pk=media_id).exists()
    # Sending the upload again is the ordinary 400.
    again = client.post(f"/api/v1/messaging/conversations/{conv.pk}/messages",
                        {"client_msg_id": "img2", "kind": "image", "content": {"media_id": media_id}}, format="json")  # fmt: skip
    assert again.status_code == 400 and again.json()["error"]["code"] == "media_not_found"


def test_a_forwarded_copy_keeps_the_file_until_it_is_recalled_too(alice, bob, carol):
    ab, bc = direct(alice, bob), direct(bob, carol)
    att = upload(alice)
    names = files_of(att)
    original = send_image(alice, ab, att)
    (copy,) = services.message_forward(
        user_id=bob.pk, from_conversation_id=ab.pk, seqs=[original.seq], to_conversation_ids=[bc.pk]
    )
    assert copy.content["media_id"] == str(att.pk) and copy.forwarded
    recall(alice, original)
    assert on_disk(names) == [True, True] and Attachment.objects.filter(pk=att.pk).exists()
    # The recalled original cannot be forwarded any more; the copy can.
    with pytest.raises(ValidationFailed):
        services.message_forward(
            user_id=bob.pk, from_conversation_id=ab.pk, seqs=[original.seq], to_conversation_ids=[bc.pk]
        )
    recall(bob, copy)
    assert on_disk(names) == [False, False] and not Attachment.objects.filter(pk=att.pk).exists()


def test_the_same_upload_sent_twice_goes_with_the_second_recall(alice, bob, carol):
    ab, ac = direct(alice, bob), direct(alice, carol)
    att = upload(alice)
    names = files_of(att)
    first, second = send_image(alice, ab, att), send_image(alice, ac, att)
    recall(alice, second)
    assert on_disk(names) == [True, True]
    assert Message.objects.get(pk=first.pk).content["url"] == att.file.url
    recall(alice, first)
    assert on_disk(names) == [False, False] and not Attachment.objects.filter(pk=att.pk).exists()


def test_the_purge_task_is_safe_to_run_twice_and_never_takes_an_unsent_upload(alice, bob):
    conv = direct(alice, bob)
    att, waiting = upload(alice), upload(alice)
    names, waiting_names = files_of(att), files_of(waiting)
    msg = send_image(alice, conv, att)
    assert tasks.purge_recalled_media.delay(str(att.pk)).get() is False  # still carried by msg
    recall(alice, msg)  # its own run deleted the upload
    assert tasks.purge_recalled_media.delay(str(att.pk)).get() is False
    assert tasks.purge_recalled_media.delay(str(att.pk)).get() is False
    assert on_disk(names) == [False, False]
    # An upload not sent yet is the orphan purge's business, not the recall's.
    assert media.attachment_purge_recalled(media_id=str(waiting.pk)) is False
    assert media.attachment_purge_recalled(media_id="not-a-uuid") is False
    assert on_disk(waiting_names) == [True, True]
    # Recalling twice schedules nothing more and changes nothing.
    assert recall(alice, msg).recalled


def test_recalling_a_text_message_leaves_uploads_alone(alice, bob):
    conv = direct(alice, bob)
    att = upload(alice)
    send_image(alice, conv, att)
    recall(alice, send(alice, conv, text=f'{{"media_id": "{att.pk}"}}'))
    assert Attachment.objects.filter(pk=att.pk).exists()


def _in_thread(target):
    """Run ``target`` in a thread with its own connection; returns (thread, outcome dict)."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = target()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            close_old_connections()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_send_holding_the_upload_makes_the_purge_wait_and_keep_it(alice, bob, carol):
    assert connection.vendor == "postgresql"
    ab, ac = direct(alice, bob), direct(alice, carol)
    att = upload(alice)
    names = files_of(att)
    original = send_image(alice, ab, att)
    # The recall has committed and its purge has not run yet (the row as message_recall leaves it).
    Message.objects.filter(pk=original.pk).update(recalled_at=timezone.now(), text="", content={})
    with transaction.atomic():
        second = send_image(alice, ac, att)  # holds the row FOR KEY SHARE until commit
        purger, purged = _in_thread(lambda: media.attachment_purge_recalled(media_id=str(att.pk)))
        purger.join(timeout=1)
        assert purger.is_alive()  # waiting for this send
    purger.join(timeout=30)
    assert purged == {"result": False}  # it saw the committed send
    assert on_disk(names) == [True, True] and Attachment.objects.filter(pk=att.pk).exists()
    recall(alice, Message.objects.get(pk=second.pk))
    assert on_disk(names) == [False, False]


def test_a_send_after_the_purge_locked_the_upload_is_a_clean_400(alice, bob, carol):
    ab, ac = direct(alice, bob), direct(alice, carol)
    att = upload(alice)
    names = files_of(att)
    original = send_image(alice, ab, att)
    locked, go = threading.Event(), threading.Event()

    def recall_and_purge_then_wait():
        with transaction.atomic():  # the purge's row lock and delete held until `go`
            recall(alice, original)
            deleted = media.attachment_purge_recalled(media_id=str(att.pk))
            locked.set()
            go.wait(timeout=30)
        return deleted

    purger, purged = _in_thread(recall_and_purge_then_wait)
    assert locked.wait(timeout=30)
    sender, sent = _in_thread(lambda: send_image(alice, ac, att))
    sender.join(timeout=1)
    assert sender.is_alive()  # waiting for the purge's lock
    go.set()
    purger.join(timeout=30)
    sender.join(timeout=30)
    assert purged == {"result": True}
    error = sent.get("error")
    assert isinstance(error, ValidationFailed) and error.code == "media_not_found", sent
    assert not Message.objects.filter(conversation=ac, kind="image").exists()
    assert on_disk(names) == [False, False]


def _pause_media_lock(monkeypatch, *, before: bool):
    """Pause a forward right before (or right after) it locks the uploads it copies."""
    reached, go = threading.Event(), threading.Event()
    real = message_services.attachments_lock_shared

    def paused(**kwargs):
        if before:
            reached.set()
            go.wait(timeout=30)
        result = real(**kwargs)
        if not before:
            reached.set()
            go.wait(timeout=30)
        return result

    monkeypatch.setattr(message_services, "attachments_lock_shared", paused)
    return reached, go


def forward(user, msg, to):
    return services.message_forward(
        user_id=user.pk, from_conversation_id=msg.conversation_id, seqs=[msg.seq], to_conversation_ids=[to.pk]
    )


def test_a_forward_that_read_the_original_before_its_purge_is_a_clean_400(monkeypatch, alice, bob, carol):
    ab, bc = direct(alice, bob), direct(bob, carol)
    att = upload(alice)
    names = files_of(att)
    original = send_image(alice, ab, att)
    reached, go = _pause_media_lock(monkeypatch, before=True)
    forwarder, forwarded = _in_thread(lambda: forward(bob, original, bc))
    assert reached.wait(timeout=30)  # the forward has read the original, not recalled yet
    recall(alice, original)  # commits; its purge finds no copy and deletes
    assert on_disk(names) == [False, False]
    go.set()
    forwarder.join(timeout=30)
    error = forwarded.get("error")
    assert isinstance(error, ValidationFailed) and error.code == "bad_seq", forwarded
    assert not Message.objects.filter(conversation=bc, forwarded=True).exists()


def test_a_forward_holding_the_upload_keeps_it_for_its_copy(monkeypatch, alice, bob, carol):
    ab, bc = direct(alice, bob), direct(bob, carol)
    att = upload(alice)
    names = files_of(att)
    original = send_image(alice, ab, att)
    reached, go = _pause_media_lock(monkeypatch, before=False)
    forwarder, forwarded = _in_thread(lambda: forward(bob, original, bc))
    assert reached.wait(timeout=30)  # the forward holds the upload's row
    recaller, recalled = _in_thread(lambda: recall(alice, original))
    recaller.join(timeout=1)
    assert recaller.is_alive()  # the recall committed; its purge waits for the forward
    go.set()
    forwarder.join(timeout=30)
    recaller.join(timeout=30)
    assert "error" not in forwarded and "error" not in recalled, (forwarded, recalled)
    (copy,) = forwarded["result"]
    assert copy.content["media_id"] == str(att.pk) and on_disk(names) == [True, True]
    recall(bob, copy)
    assert on_disk(names) == [False, False] and not Attachment.objects.filter(pk=att.pk).exists()


def test_sends_racing_a_recall_never_leave_a_message_without_its_file(alice, bob, carol):
    ab, ac = direct(alice, bob), direct(alice, carol)
    for _round in range(6):
        att = upload(alice)
        names = files_of(att)
        original = send_image(alice, ab, att)
        outcome = run_together(
            [
                partial(send_image, alice, ac, att),
                partial(send_image, alice, ac, att),
                partial(recall, alice, original),
            ],
            timeout=30,
        )
        for error in outcome.errors:
            assert error is None or (
                isinstance(error, ValidationFailed) and error.code == "media_not_found"
            ), error
        carried = Message.objects.filter(content__media_id=str(att.pk), recalled_at__isnull=True)
        if carried.exists():
            assert Attachment.objects.filter(pk=att.pk).exists() and on_disk(names) == [True, True]
        else:
            assert not Attachment.objects.filter(pk=att.pk).exists() and on_disk(names) == [False, False]


def test_the_reference_check_can_use_its_partial_index(alice, bob):
    conv = direct(alice, bob)
    att = upload(alice)
    send_image(alice, conv, att)
    query = media._carriers(media_id=str(att.pk)).values("id")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = query.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "messaging_message_media_ref" in plan, plan
