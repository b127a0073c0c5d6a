"""Moments REST API: thin views that validate input, call a service or selector, render."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.generics import ListAPIView
from rest_framework.pagination import Cursor
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from superapp.core.pagination import CursorPagination

from .. import events, selectors, services
from ..models import Comment, FriendSetting, Notification, Post
from . import serializers as s
from .renderers import FastJSONRenderer

NO_CONTENT = OpenApiResponse(description="Done.")
TAGS = ["moments"]


def _valid(serializer_class, data, **kwargs):
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class FeedPagination(CursorPagination):
    page_size = 20
    max_page_size = 50
    ordering = ("-created", "-post_id")  # the position is (created, post_id): see FeedView


class AlbumPagination(CursorPagination):
    page_size = 20
    max_page_size = 50
    ordering = ("-created_at", "-id")


class CommentPagination(CursorPagination):
    page_size = 50
    ordering = ("created_at", "id")


class NotificationPagination(CursorPagination):
    page_size = 30
    ordering = "-id"


# --- posts ---------------------------------------------------------------------------------------


class FeedView(APIView):
    renderer_classes = [FastJSONRenderer]  # the page is ~26 KB: DRF's encoder cost 12x more CPU

    @extend_schema(
        parameters=[
            OpenApiParameter("cursor", str, description="The `next` link's cursor, for the following page."),
            OpenApiParameter("page_size", int, description="Posts per page (default 20, at most 50)."),
        ],
        responses=s.FeedPageSerializer,
        tags=TAGS,
        summary="My home feed: friends' posts and mine, newest first",
    )
    def get(self, request: Request) -> Response:
        # DRF's cursor encoding, around a keyset position of our own: (entry time, post id).
        paginator = FeedPagination()
        paginator.base_url = request.build_absolute_uri()
        cursor = paginator.decode_cursor(request)
        before = None
        if cursor is not None:
            created, _, post_id = (cursor.position or "").partition("|")
            try:
                when = datetime.fromisoformat(created)
                before = (when if when.tzinfo else when.replace(tzinfo=UTC), int(post_id))
            except ValueError:
                raise NotFound(paginator.invalid_cursor_message) from None
            if not 0 < before[1] < 2**63:  # cursors are not signed: a bigint out of range is a 404
                raise NotFound(paginator.invalid_cursor_message)
        limit = paginator.get_page_size(request)
        if before is None and limit == paginator.page_size:
            # The first page, rendered (from the per-viewer cache when current): its posts are
            # already JSON, spliced into the answer by the renderer (orjson.Fragment). Only the
            # default size is cached: one entry per viewer, not one per page_size asked for.
            page = selectors.feed_first_page(viewer_id=request.user.pk, limit=limit)
            results = orjson.Fragment(page.posts_json)
        else:
            page = selectors.feed_page(viewer_id=request.user.pk, before=before, limit=limit)
            results = page.posts
        next_link = None
        if page.next_position is not None:
            created, post_id = page.next_position
            next_link = paginator.encode_cursor(
                Cursor(offset=0, reverse=False, position=f"{created.isoformat()}|{post_id}")
            )
        return Response({"next": next_link, "previous": None, "results": results})


class AlbumView(ListAPIView):
    serializer_class = s.PostSerializer
    pagination_class = AlbumPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Post.objects.none()
        return selectors.album(viewer=self.request.user, author_id=self.kwargs["user_id"])

    @extend_schema(tags=TAGS, summary="One person's posts, as I may see them (their album)")
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class PostCreateView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        request=s.PostCreateSerializer, responses={201: s.PostSerializer}, tags=TAGS, summary="Publish a post"
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.PostCreateSerializer, request.data)
        link = data.pop("link")
        location = data.pop("location")
        post = services.post_publish(
            author=request.user,
            link=services.LinkCard(
                url=link["url"],
                title=link["title"],
                description=link["description"],
                thumb_url=link.get("thumb_url") or "",
            )
            if link
            else None,
            location=services.Place(**location) if location else None,
            **data,
        )
        post = selectors.post_get(viewer_id=request.user.pk, post_id=post.pk)
        return Response(
            s.PostSerializer(post, context={"request": request}).data, status=status.HTTP_201_CREATED
        )


class PostDetailView(APIView):
    @extend_schema(responses=s.PostSerializer, tags=TAGS, summary="One post")
    def get(self, request: Request, post_id: int) -> Response:
        post = selectors.post_get(viewer_id=request.user.pk, post_id=post_id)
        return Response(s.PostSerializer(post, context={"request": request}).data)

    @extend_schema(responses={204: NO_CONTENT}, tags=TAGS, summary="Delete my post")
    def delete(self, request: Request, post_id: int) -> Response:
        services.post_delete(user=request.user, post_id=post_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MediaUploadView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": s.MediaUploadSerializer},
        responses={201: s.MediaSerializer},
        tags=TAGS,
        summary="Upload an image or a video for a post about to be published",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.MediaUploadSerializer, request.data)
        item = services.media_upload(
            owner=request.user, kind=data["kind"], upload=data["file"], cover=data.get("cover")
        )
        return Response(events.media(item), status=status.HTTP_201_CREATED)


# --- likes, comments, reports ----------------------------------------------------------------------


class LikeView(APIView):
    @extend_schema(request=None, responses={204: NO_CONTENT}, tags=TAGS, summary="Like a post (idempotent)")
    def put(self, request: Request, post_id: int) -> Response:
        services.like_add(user=request.user, post_id=post_id)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={204: NO_CONTENT}, tags=TAGS, summary="Take my like back")
    def delete(self, request: Request, post_id: int) -> Response:
        services.like_remove(user=request.user, post_id=post_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CommentListView(ListAPIView):
    serializer_class = s.CommentSerializer
    pagination_class = CommentPagination
    parser_classes = [JSONParser]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Comment.objects.none()
        return selectors.comment_list(viewer_id=self.request.user.pk, post_id=self.kwargs["post_id"])

    @extend_schema(tags=TAGS, summary="Comments on a post that I may see, oldest first")
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=s.CommentCreateSerializer,
        responses={201: s.CommentSerializer},
        tags=TAGS,
        summary="Comment on a post, or reply to a comment",
    )
    def post(self, request: Request, post_id: int) -> Response:
        data = _valid(s.CommentCreateSerializer, request.data)
        comment = services.comment_create(user=request.user, post_id=post_id, **data)
        return Response(events.comment(comment), status=status.HTTP_201_CREATED)


class CommentDetailView(APIView):
    @extend_schema(
        responses={204: NO_CONTENT}, tags=TAGS, summary="Delete a comment (mine, or any on my post)"
    )
    def delete(self, request: Request, comment_id: int) -> Response:
        services.comment_delete(user=request.user, comment_id=comment_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReportView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        request=s.ReportCreateSerializer,
        responses={201: s.ReportSerializer, 200: s.ReportSerializer},
        tags=TAGS,
        summary="Report a post to the moderators",
    )
    def post(self, request: Request, post_id: int) -> Response:
        data = _valid(s.ReportCreateSerializer, request.data)
        report, created = services.report_create(reporter=request.user, post_id=post_id, **data)
        return Response(
            s.ReportSerializer(report).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


# --- notifications ---------------------------------------------------------------------------------


class NotificationListView(ListAPIView):
    serializer_class = s.NotificationSerializer
    pagination_class = NotificationPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Notification.objects.none()
        return selectors.notification_list(recipient_id=self.request.user.pk)

    @extend_schema(tags=TAGS, summary="New interactions: likes, comments and replies that concern me")
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class UnreadCountView(APIView):
    @extend_schema(
        responses=s.UnreadCountSerializer, tags=TAGS, summary="How many new interactions are unread"
    )
    def get(self, request: Request) -> Response:
        return Response({"unread_count": selectors.unread_count(recipient_id=request.user.pk)})


class MarkReadView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        request=s.MarkReadSerializer,
        responses=s.UnreadCountSerializer,
        tags=TAGS,
        summary="Mark new interactions as read",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.MarkReadSerializer, request.data)
        return Response({"unread_count": services.notifications_mark_read(user=request.user, **data)})


# --- settings --------------------------------------------------------------------------------------


class SettingsView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses=s.SettingsSerializer, tags=TAGS, summary="My Moments settings")
    def get(self, request: Request) -> Response:
        return Response({"visible_days": selectors.settings_get(user_id=request.user.pk).visible_days})

    @extend_schema(
        request=s.SettingsSerializer,
        responses=s.SettingsSerializer,
        tags=TAGS,
        summary="How far back friends may see my posts",
    )
    def patch(self, request: Request) -> Response:
        data = _valid(s.SettingsSerializer, request.data)
        profile = services.moments_settings_update(user=request.user, visible_days=data["visible_days"])
        return Response({"visible_days": profile.visible_days})


class FriendSettingListView(ListAPIView):
    serializer_class = s.FriendSettingSerializer
    pagination_class = None

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return FriendSetting.objects.none()
        return selectors.friend_setting_list(owner_id=self.request.user.pk)

    @extend_schema(tags=TAGS, summary="Friends I hide my Moments from, or whose Moments I hide")
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class FriendSettingView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        responses=s.FriendSettingSerializer, tags=TAGS, summary="My Moments choices about one friend"
    )
    def get(self, request: Request, user_id: int) -> Response:
        setting = selectors.friend_setting_get(owner_id=request.user.pk, target_id=user_id)
        return Response(s.FriendSettingSerializer(setting).data)

    @extend_schema(
        request=s.FriendSettingSerializer,
        responses=s.FriendSettingSerializer,
        tags=TAGS,
        summary="Don't let them see my Moments / hide their Moments from me",
    )
    def patch(self, request: Request, user_id: int) -> Response:
        data = _valid(s.FriendSettingSerializer, request.data)
        setting = services.friend_setting_update(owner=request.user, target_id=user_id, **data)
        return Response(s.FriendSettingSerializer(setting).data)
