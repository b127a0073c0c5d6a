"""Input and output shapes of the Moments API.

Output serializers render through the payload builders of ``moments.events`` (a post looks the
same in a REST answer and in a WebSocket frame); their declared fields document that shape in
the OpenAPI schema.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from django.conf import settings
from django.core.validators import URLValidator
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from superapp.core.serializers import BuilderSerializer

from .. import events
from ..models import Media, MomentsProfile, Notification, Post, Report, Visibility

HTTP_URL = [URLValidator(schemes=["http", "https"])]


class UserBriefSerializer(BuilderSerializer):
    builder = staticmethod(events.user_brief)
    id = serializers.IntegerField()
    handle = serializers.CharField()
    display_name = serializers.CharField()
    avatar_thumb_url = serializers.CharField(allow_null=True)


class MediaSerializer(BuilderSerializer):
    builder = staticmethod(events.media)
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Media.Kind.choices)
    url = serializers.CharField()
    thumb_url = serializers.CharField(
        allow_null=True, help_text="Image thumbnail, or the video's cover if given."
    )
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    size = serializers.IntegerField(help_text="Bytes.")
    content_type = serializers.CharField()


class CommentSerializer(BuilderSerializer):
    builder = staticmethod(events.comment)
    id = serializers.IntegerField()
    post_id = serializers.IntegerField()
    author = UserBriefSerializer()
    text = serializers.CharField()
    reply_to_id = serializers.IntegerField(allow_null=True)
    reply_to_user = UserBriefSerializer(allow_null=True)
    created_at = serializers.DateTimeField()


class LinkSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2000, validators=HTTP_URL)
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)
    thumb_url = serializers.CharField(
        max_length=2000,
        required=False,
        default="",
        allow_blank=True,
        allow_null=True,
        validators=HTTP_URL,
        help_text="An http(s) URL chosen by the client; the server never fetches it.",
    )


class LocationSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    latitude = serializers.FloatField(min_value=-90, max_value=90, required=False, allow_null=True)
    longitude = serializers.FloatField(min_value=-180, max_value=180, required=False, allow_null=True)

    def validate(self, attrs):
        lat, lon = attrs.get("latitude"), attrs.get("longitude")
        if (lat is None) != (lon is None):
            raise serializers.ValidationError(_("Give both latitude and longitude, or neither."))
        for key in ("latitude", "longitude"):
            if attrs.get(key) is not None:
                attrs[key] = Decimal(str(attrs[key])).quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN)
        return attrs


class PostSerializer(serializers.Serializer):
    """A post as the requesting user sees it (likes and comments filtered for them)."""

    id = serializers.IntegerField()
    author = UserBriefSerializer()
    kind = serializers.ChoiceField(choices=Post.Kind.choices)
    text = serializers.CharField()
    media = MediaSerializer(many=True)
    link = LinkSerializer(allow_null=True)
    location = LocationSerializer(allow_null=True)
    created_at = serializers.DateTimeField()
    is_mine = serializers.BooleanField()
    visibility = serializers.ChoiceField(
        choices=Visibility.choices, allow_null=True, help_text="Only on one's own posts."
    )
    liked_by_me = serializers.BooleanField()
    likes = UserBriefSerializer(
        many=True, help_text="Likes by the viewer's friends (all, on one's own post)."
    )
    comments = CommentSerializer(many=True, help_text="The first comments the viewer may see, oldest first.")
    more_comments = serializers.BooleanField(
        help_text="More comments: read them from the post's comment list."
    )

    def to_representation(self, instance):
        return events.post(instance, viewer_id=self.context["request"].user.pk)


class FeedPageSerializer(serializers.Serializer):
    next = serializers.CharField(allow_null=True, help_text="The next page, older posts; null at the end.")
    previous = serializers.CharField(allow_null=True, help_text="Always null: a feed is read forwards.")
    results = PostSerializer(many=True)


class PostCreateSerializer(serializers.Serializer):
    text = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=settings.MOMENTS_TEXT_MAX,
        trim_whitespace=False,
    )
    media_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        default=list,
        max_length=settings.MOMENTS_IMAGES_MAX,
        help_text="Uploads from POST /moments/media, in display order: up to 9 images or one video.",
    )
    link = LinkSerializer(required=False, allow_null=True, default=None)
    location = LocationSerializer(required=False, allow_null=True, default=None)
    visibility = serializers.ChoiceField(choices=Visibility.choices, default=Visibility.FRIENDS)
    user_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        default=list,
        max_length=5000,
        help_text="Friends to share with (include) or not to share with (exclude).",
    )
    tag_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        default=list,
        max_length=100,
        help_text="Tags whose members, as of now, are shared with (include) or left out (exclude).",
    )


class MediaUploadSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Media.Kind.choices)
    file = serializers.FileField(
        help_text="An image (JPEG, PNG, WebP, GIF; 10 MB) or a video (MP4, MOV, WebM)."
    )
    cover = serializers.FileField(required=False, help_text="Video only: an image shown before it plays.")


class CommentCreateSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=settings.MOMENTS_COMMENT_MAX)
    reply_to_id = serializers.IntegerField(required=False, allow_null=True, min_value=1, default=None)


class ReportCreateSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=Report.Reason.choices)
    note = serializers.CharField(required=False, default="", allow_blank=True, max_length=500)


class ReportSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    post_id = serializers.IntegerField()
    reason = serializers.CharField()
    note = serializers.CharField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()


class PostBriefSerializer(BuilderSerializer):
    builder = staticmethod(events.post_brief)
    id = serializers.IntegerField()
    author_id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Post.Kind.choices)
    excerpt = serializers.CharField()
    thumb_url = serializers.CharField(allow_null=True)


class NotificationSerializer(BuilderSerializer):
    builder = staticmethod(events.notification)
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Notification.Kind.choices)
    actor = UserBriefSerializer()
    post = PostBriefSerializer()
    comment = CommentSerializer(allow_null=True)
    created_at = serializers.DateTimeField()
    read = serializers.BooleanField()


class UnreadCountSerializer(serializers.Serializer):
    unread_count = serializers.IntegerField()


class MarkReadSerializer(serializers.Serializer):
    up_to_id = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        default=None,
        help_text="Mark read up to this notification (the newest one shown); all when absent.",
    )


class SettingsSerializer(serializers.Serializer):
    visible_days = serializers.ChoiceField(
        choices=MomentsProfile.Window.choices, help_text="Friends see my posts of the last N days; 0: all."
    )


class FriendSettingSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(source="target_id", read_only=True)
    hide_my_posts = serializers.BooleanField(required=False, help_text="Don't let them see my Moments.")
    hide_their_posts = serializers.BooleanField(required=False, help_text="Hide their Moments from my feed.")
