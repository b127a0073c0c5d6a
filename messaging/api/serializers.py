"""Input and output shapes of the messaging API.

Outputs render through the event payload builders (``messaging.events``), so a message looks the
same in a REST answer and in a WebSocket frame; the declared fields document it in OpenAPI.
Inputs are checked twice on purpose: shape here (types, lengths), rules in the services.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from superapp.core.errors import ValidationFailed
from superapp.core.serializers import BuilderSerializer

from .. import content, events, selectors
from ..models import Attachment, Conversation, Member, Message, UserSettings

SENDABLE_CHOICES = [(k, k) for k in content.SENDABLE_KINDS]
MANAGED_ROLES = [(Member.Role.ADMIN.value, "admin"), (Member.Role.MEMBER.value, "member")]


class ChatUserBriefSerializer(BuilderSerializer):
    builder = staticmethod(events.user_brief)
    id = serializers.IntegerField()
    handle = serializers.CharField()
    display_name = serializers.CharField()
    avatar_thumb_url = serializers.CharField(allow_null=True)


class ChatQuoteSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    seq = serializers.IntegerField()
    sender_id = serializers.IntegerField(allow_null=True)
    kind = serializers.ChoiceField(choices=Message.Kind.choices)
    text = serializers.CharField()
    recalled = serializers.BooleanField()


class ChatMessageSerializer(BuilderSerializer):
    builder = staticmethod(events.message)
    id = serializers.IntegerField()
    conversation_id = serializers.IntegerField()
    seq = serializers.IntegerField(help_text="Strictly increasing in the conversation, no gaps.")
    sender_id = serializers.IntegerField(allow_null=True, help_text="null for system messages.")
    client_msg_id = serializers.CharField(allow_null=True)
    kind = serializers.ChoiceField(choices=Message.Kind.choices)
    text = serializers.CharField()
    content = serializers.DictField(
        help_text="Kind-specific: media (url, thumb_url, size, ...), sticker, location, contact; system: event; "
        "transfer: transfer_id, amount, currency, note, status; red_packet: red_packet_id, kind, greeting, "
        "count, currency (both written by payments only)."
    )
    reply_to = ChatQuoteSerializer(allow_null=True)
    mentions = serializers.ListField(child=serializers.IntegerField())
    mention_all = serializers.BooleanField()
    forwarded = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    recalled = serializers.BooleanField()
    recalled_at = serializers.DateTimeField(allow_null=True)
    recalled_by = serializers.IntegerField(allow_null=True)


class ChatConversationSerializer(BuilderSerializer):
    builder = staticmethod(events.conversation)
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Conversation.Kind.choices)
    name = serializers.CharField()
    avatar_url = serializers.CharField(allow_null=True)
    avatar_thumb_url = serializers.CharField(allow_null=True)
    announcement = serializers.CharField()
    announcement_at = serializers.DateTimeField(allow_null=True)
    owner_id = serializers.IntegerField(allow_null=True)
    invite_approval = serializers.BooleanField()
    member_count = serializers.IntegerField()
    direct_user_ids = serializers.ListField(child=serializers.IntegerField(), allow_null=True)
    last_seq = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    dissolved = serializers.BooleanField()


def conversation_item(m: Member) -> dict[str, Any]:
    """One line of my conversation list (needs ``selectors.decorate``)."""
    last = getattr(m, "last_message", None)
    peer = getattr(m, "peer", None)
    return {
        "conversation": events.conversation(m.conversation),
        "peer": events.user_brief(peer) if peer is not None else None,
        "last_message": events.message(last) if last is not None else None,
        "unread_count": selectors.unread(m),
        "mentioned": selectors.mentioned(m),
        "last_read_seq": m.last_read_seq,
        "joined_seq": m.joined_seq,
        "role": m.role,
        "muted": m.muted,
        "pinned": m.pinned,
        "nickname": m.nickname,
    }


class ChatConversationItemSerializer(BuilderSerializer):
    builder = staticmethod(conversation_item)
    conversation = ChatConversationSerializer()
    peer = ChatUserBriefSerializer(allow_null=True, help_text="The other user of a direct chat.")
    last_message = ChatMessageSerializer(allow_null=True)
    unread_count = serializers.IntegerField()
    mentioned = serializers.BooleanField(help_text="An unread message mentions me (or everyone).")
    last_read_seq = serializers.IntegerField()
    joined_seq = serializers.IntegerField(help_text="History starts after this sequence.")
    role = serializers.ChoiceField(choices=Member.Role.choices)
    muted = serializers.BooleanField()
    pinned = serializers.BooleanField()
    nickname = serializers.CharField()


class ChatMemberSerializer(BuilderSerializer):
    builder = staticmethod(events.member)
    user = ChatUserBriefSerializer()
    role = serializers.ChoiceField(choices=Member.Role.choices)
    nickname = serializers.CharField()
    joined_at = serializers.DateTimeField()


class ChatJoinRequestSerializer(BuilderSerializer):
    builder = staticmethod(events.join_request)
    id = serializers.IntegerField()
    conversation_id = serializers.IntegerField()
    user = ChatUserBriefSerializer()
    inviter_id = serializers.IntegerField(allow_null=True)
    via_link = serializers.BooleanField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()


# --- inputs -----------------------------------------------------------------------------------


class ChatSendSerializer(serializers.Serializer):
    """A message to send. Kind-specific rules are the service's (one place for REST and socket)."""

    client_msg_id = serializers.CharField(
        max_length=64, help_text="The client's id: a retry returns the same message."
    )
    kind = serializers.ChoiceField(choices=SENDABLE_CHOICES)
    text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, default="")
    content = serializers.DictField(
        required=False,
        default=dict,
        help_text="media_id; sticker_id; latitude/longitude/name/address; user_id.",
    )
    reply_to_seq = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    mentions = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, default=list, max_length=50
    )
    mention_all = serializers.BooleanField(required=False, default=False)


class ChatSendAnywhereSerializer(ChatSendSerializer):
    conversation_id = serializers.IntegerField(required=False, min_value=1)
    to_user_id = serializers.IntegerField(
        required=False, min_value=1, help_text="A direct chat (created on the first message)."
    )


class ChatSendResultSerializer(serializers.Serializer):
    message = ChatMessageSerializer()
    created = serializers.BooleanField(help_text="false: a retry of a stored message.")


class ChatHistoryQuerySerializer(serializers.Serializer):
    before = serializers.IntegerField(required=False, min_value=1)
    after = serializers.IntegerField(required=False, min_value=0)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)


class ChatHistorySerializer(serializers.Serializer):
    messages = ChatMessageSerializer(many=True)
    has_more = serializers.BooleanField()


class ChatSeqSerializer(serializers.Serializer):
    seq = serializers.IntegerField(min_value=1)


class ChatReadResultSerializer(serializers.Serializer):
    conversation_id = serializers.IntegerField()
    last_read_seq = serializers.IntegerField()


class ChatForwardSerializer(serializers.Serializer):
    from_conversation_id = serializers.IntegerField(min_value=1)
    seqs = serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=1, max_length=30)
    to_conversation_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), min_length=1, max_length=9
    )
    client_msg_id = serializers.CharField(max_length=64, required=False)


class ChatForwardResultSerializer(serializers.Serializer):
    messages = ChatMessageSerializer(many=True)


class ChatSearchQuerySerializer(serializers.Serializer):
    q = serializers.CharField(max_length=200)
    conversation_id = serializers.IntegerField(required=False, min_value=1)


class ChatGroupCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    member_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), min_length=1, max_length=499
    )


class ChatGroupUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64, required=False, allow_blank=True)
    announcement = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    invite_approval = serializers.BooleanField(required=False)


class ChatAvatarSerializer(serializers.Serializer):
    avatar = serializers.FileField(help_text="JPEG, PNG, WebP or GIF; at most 10 MB.")


class ChatInviteSerializer(serializers.Serializer):
    user_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), min_length=1, max_length=500
    )


class ChatInviteResultSerializer(serializers.Serializer):
    added = serializers.ListField(child=serializers.IntegerField())
    requested = serializers.ListField(child=serializers.IntegerField(), help_text="Waiting for approval.")


class ChatRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=MANAGED_ROLES)


class ChatUserIdSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(min_value=1)


class ChatMemberSettingsSerializer(serializers.Serializer):
    muted = serializers.BooleanField(required=False)
    pinned = serializers.BooleanField(required=False)
    nickname = serializers.CharField(required=False, allow_blank=True, max_length=32)


class ChatInviteLinkQuerySerializer(serializers.Serializer):
    expires_in = serializers.IntegerField(required=False, min_value=60, help_text="Seconds, at most 7 days.")


class ChatInviteLinkSerializer(serializers.Serializer):
    code = serializers.CharField()
    url = serializers.CharField()
    expires_at = serializers.IntegerField(help_text="Unix time.")


class ChatGroupJoinSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=2000, help_text="The code, or the whole superapp:// link.")


class ChatJoinResultSerializer(serializers.Serializer):
    conversation = ChatConversationSerializer()
    joined = serializers.BooleanField(help_text="false: waiting for the owner's or an admin's approval.")


class ChatMediaUploadSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Attachment.Kind.choices)
    file = serializers.FileField()
    duration = serializers.IntegerField(required=False, min_value=1, help_text="Seconds; required for voice.")


class ChatMediaSerializer(serializers.Serializer):
    media_id = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=Attachment.Kind.choices)
    url = serializers.CharField()
    thumb_url = serializers.CharField(allow_null=True)
    name = serializers.CharField()
    mime = serializers.CharField()
    size = serializers.IntegerField()
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    duration = serializers.IntegerField(allow_null=True)


class ChatSettingsSerializer(BuilderSerializer):
    builder = staticmethod(events.user_settings)
    show_preview = serializers.BooleanField(
        required=False, help_text="Sender and text in push notifications."
    )
    allow_strangers = serializers.BooleanField(required=False, help_text="Direct messages from non-friends.")
    presence_visibility = serializers.ChoiceField(choices=UserSettings.Visibility.choices, required=False)


class ChatSettingsUpdateSerializer(serializers.Serializer):
    show_preview = serializers.BooleanField(required=False)
    allow_strangers = serializers.BooleanField(required=False)
    presence_visibility = serializers.ChoiceField(choices=UserSettings.Visibility.choices, required=False)


class ChatPresenceSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    online = serializers.BooleanField(allow_null=True, help_text="null: not shown to you.")
    last_seen_at = serializers.DateTimeField(allow_null=True)


class ChatPresenceListSerializer(serializers.Serializer):
    presence = ChatPresenceSerializer(many=True)


def id_list(value: str, field: str, maximum: int = 200) -> list[int]:
    try:
        ids = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        ids = []
    if not 0 < len(ids) <= maximum or any(i <= 0 for i in ids):
        raise ValidationFailed(fields={field: [f"1-{maximum} comma-separated user ids."]})
    return ids
