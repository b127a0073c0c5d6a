"""Input and output shapes of the accounts API.

Output serializers render through the same builders as the events (``accounts.events``), so a
user looks the same in a REST answer and in a WebSocket frame; their declared fields document
that shape in the OpenAPI schema.
"""

from __future__ import annotations

from rest_framework import serializers

from superapp.core.serializers import BuilderSerializer

from .. import events


class UserPublicSerializer(BuilderSerializer):
    builder = staticmethod(events.user_public)
    id = serializers.IntegerField()
    handle = serializers.CharField()
    display_name = serializers.CharField()
    avatar_url = serializers.URLField(allow_null=True)
    avatar_thumb_url = serializers.URLField(allow_null=True)
    region = serializers.CharField()
    bio = serializers.CharField()


class MeSerializer(UserPublicSerializer):
    builder = staticmethod(events.me_private)
    phone = serializers.CharField(allow_null=True)
    email = serializers.EmailField(allow_null=True)
    findable_by_phone = serializers.BooleanField()
    findable_by_handle = serializers.BooleanField()
    friend_requests_need_approval = serializers.BooleanField()
    handle_changed_at = serializers.DateTimeField(allow_null=True)


class MeUpdateSerializer(serializers.Serializer):
    handle = serializers.CharField(required=False)
    display_name = serializers.CharField(required=False, allow_blank=True)
    region = serializers.CharField(required=False, allow_blank=True)
    bio = serializers.CharField(required=False, allow_blank=True)
    findable_by_phone = serializers.BooleanField(required=False)
    findable_by_handle = serializers.BooleanField(required=False)
    friend_requests_need_approval = serializers.BooleanField(required=False)


class AvatarUploadSerializer(serializers.Serializer):
    avatar = serializers.FileField(help_text="JPEG, PNG, WebP or GIF; at most 10 MB.")


# --- auth ------------------------------------------------------------------------------------


class RegisterSerializer(serializers.Serializer):
    phone = serializers.CharField(required=False, help_text="International format, +8613800138000.")
    email = serializers.CharField(required=False)
    password = serializers.CharField(write_only=True, style={"input_type": "password"})
    display_name = serializers.CharField(max_length=64)


class RegisteredSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    handle = serializers.CharField()
    verification_channel = serializers.ChoiceField(choices=["phone", "email"])
    verification_expires_in = serializers.IntegerField(help_text="Seconds.")


class VerifySerializer(serializers.Serializer):
    login = serializers.CharField(help_text="The phone or email registered.")
    code = serializers.CharField(max_length=6, min_length=6)
    device_name = serializers.CharField(required=False, default="", allow_blank=True, max_length=100)


class ResendSerializer(serializers.Serializer):
    login = serializers.CharField(help_text="The phone or email registered.")


class LoginSerializer(serializers.Serializer):
    login = serializers.CharField(help_text="Handle, phone or email.")
    password = serializers.CharField(style={"input_type": "password"})
    device_name = serializers.CharField(required=False, default="", allow_blank=True, max_length=100)


class TokensSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()
    session_id = serializers.UUIDField()


class RefreshSerializer(serializers.Serializer):
    refresh = serializers.CharField()


class RefreshedSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class LogoutSerializer(serializers.Serializer):
    refresh = serializers.CharField(required=False, help_text="Needed only without an access token.")


class SessionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    device_name = serializers.CharField()
    user_agent = serializers.CharField()
    ip_address = serializers.IPAddressField(allow_null=True)
    created_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()
    current = serializers.SerializerMethodField()

    def get_current(self, obj) -> bool:
        return str(obj.pk) == str(self.context.get("current_session_id"))


class TicketSerializer(serializers.Serializer):
    ticket = serializers.CharField()
    expires_in = serializers.IntegerField()


# --- contacts --------------------------------------------------------------------------------


class TagRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class FriendSerializer(serializers.Serializer):
    user = UserPublicSerializer(source="friend")
    remark = serializers.CharField()
    source = serializers.CharField()
    # The selector prefetches the owner's tags onto the friend (``friend.my_tags``), not the row.
    tags = TagRefSerializer(many=True, source="friend.my_tags")
    created_at = serializers.DateTimeField()


class FriendUpdateSerializer(serializers.Serializer):
    remark = serializers.CharField(required=False, allow_blank=True, max_length=64)
    tag_ids = serializers.ListField(child=serializers.IntegerField(), required=False, max_length=100)


class FriendRequestSerializer(BuilderSerializer):
    builder = staticmethod(events.friend_request)
    id = serializers.IntegerField()
    from_user = UserPublicSerializer()
    to_user = UserPublicSerializer()
    note = serializers.CharField()
    source = serializers.CharField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()


class FriendRequestCreateSerializer(serializers.Serializer):
    to_user_id = serializers.IntegerField()
    note = serializers.CharField(required=False, default="", allow_blank=True, max_length=100)
    source = serializers.ChoiceField(choices=["search", "qr"], default="search")
    qr_code = serializers.CharField(required=False, default="", allow_blank=True, help_text="With source=qr.")
    search_token = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        help_text="With source=search: the search result's add_token.",
    )


class FriendRequestOutcomeSerializer(serializers.Serializer):
    request = FriendRequestSerializer()
    became_friends = serializers.BooleanField()


class AcceptSerializer(serializers.Serializer):
    remark = serializers.CharField(required=False, default="", allow_blank=True, max_length=64)


class TagSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=32)
    member_ids = serializers.ListField(child=serializers.IntegerField(), required=False, max_length=5000)

    def to_representation(self, instance):
        return {
            "id": instance.pk,
            "name": instance.name,
            "member_ids": sorted(m.pk for m in instance.members.all()),
        }


class TagUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=32)
    member_ids = serializers.ListField(child=serializers.IntegerField(), required=False, max_length=5000)


class BlockSerializer(serializers.Serializer):
    user = UserPublicSerializer(source="blocked")
    created_at = serializers.DateTimeField()


class BlockCreateSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()


class SearchQuerySerializer(serializers.Serializer):
    q = serializers.CharField(max_length=64, help_text="An exact handle or phone number.")


class SearchResultSerializer(serializers.Serializer):
    user = UserPublicSerializer()
    is_friend = serializers.BooleanField()
    add_token = serializers.CharField(help_text="Send as search_token with a friend request (valid 24 h).")


class QrResolveSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="The text read from a friend QR code.")


class QrResolvedSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["add_friend", "open_profile"])
    user = UserPublicSerializer()
    qr_code = serializers.CharField(help_text="Pass as qr_code with source=qr to send the request.")


class FriendCodeSerializer(serializers.Serializer):
    url = serializers.CharField()
    code = serializers.CharField()
    expires_in = serializers.IntegerField()


class ProfileSerializer(serializers.Serializer):
    user = UserPublicSerializer()
    is_friend = serializers.BooleanField()
    remark = serializers.CharField(allow_null=True)
