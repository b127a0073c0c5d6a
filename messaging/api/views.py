"""Messaging REST API: thin views that validate input, call a service or selector, render."""

from __future__ import annotations

from django.db.models import F
from django.db.models.functions import Coalesce
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from superapp.core.pagination import CursorPagination

from .. import events, selectors, services
from ..models import JoinRequest, Member, Message
from . import serializers as s

NO_CONTENT = OpenApiResponse(description="Done.")
TAGS = ["messaging"]
GROUP_TAGS = ["messaging: groups"]


def _valid(serializer_class, data, **kwargs):
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _me(request: Request) -> int:
    return request.user.pk


class ConversationPagination(CursorPagination):
    page_size = 50
    ordering = ("-activity", "-id")


class SearchPagination(CursorPagination):
    page_size = 20
    max_page_size = 50
    ordering = "-id"


# --- conversations ---------------------------------------------------------------------------


class ConversationListView(ListAPIView):
    serializer_class = s.ChatConversationItemSerializer
    pagination_class = ConversationPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Member.objects.none()
        return selectors.conversation_list(user_id=_me(self.request)).annotate(
            activity=Coalesce(F("conversation__last_message_at"), F("conversation__created_at"))
        )

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        if page is not None:
            selectors.decorate(page, user_id=_me(self.request))
        return page

    @extend_schema(tags=TAGS, summary="My conversations, most recent activity first",
                   description="Each with its last message, unread count and mention flag. Pinned ones carry "
                   "`pinned` (clients show them on top).")  # fmt: skip
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


def _item(member: Member, user_id: int) -> dict:
    selectors.decorate([member], user_id=user_id)
    return s.conversation_item(member)


class ConversationDetailView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses=s.ChatConversationItemSerializer, tags=TAGS, summary="One of my conversations")
    def get(self, request: Request, conversation_id: int) -> Response:
        return Response(
            _item(
                selectors.membership_get(user_id=_me(request), conversation_id=conversation_id), _me(request)
            )
        )

    @extend_schema(request=s.ChatGroupUpdateSerializer, responses=s.ChatConversationItemSerializer, tags=GROUP_TAGS,
                   summary="Rename a group, set its announcement, switch invite approval")  # fmt: skip
    def patch(self, request: Request, conversation_id: int) -> Response:
        data = _valid(s.ChatGroupUpdateSerializer, request.data)
        services.group_update(user_id=_me(request), conversation_id=conversation_id, **data)
        return self.get(request, conversation_id)

    @extend_schema(responses={204: NO_CONTENT}, tags=GROUP_TAGS, summary="Dissolve a group (owner)")
    def delete(self, request: Request, conversation_id: int) -> Response:
        services.group_dissolve(user_id=_me(request), conversation_id=conversation_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DirectConversationView(APIView):
    @extend_schema(responses=s.ChatConversationItemSerializer, tags=TAGS,
                   summary="My direct chat with a user (404 before the first message)")  # fmt: skip
    def get(self, request: Request, user_id: int) -> Response:
        return Response(
            _item(selectors.direct_conversation_get(user_id=_me(request), peer_id=user_id), _me(request))
        )


class ConversationSettingsView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=s.ChatMemberSettingsSerializer, responses=s.ChatConversationItemSerializer, tags=TAGS,
                   summary="Mute, pin, or set my nickname in a group")  # fmt: skip
    def patch(self, request: Request, conversation_id: int) -> Response:
        data = _valid(s.ChatMemberSettingsSerializer, request.data)
        services.member_settings_update(user_id=_me(request), conversation_id=conversation_id, **data)
        return Response(
            _item(
                selectors.membership_get(user_id=_me(request), conversation_id=conversation_id), _me(request)
            )
        )


class ReadView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=s.ChatSeqSerializer, responses=s.ChatReadResultSerializer, tags=TAGS,
                   summary="I have read up to this sequence (a read receipt in a direct chat)")  # fmt: skip
    def post(self, request: Request, conversation_id: int) -> Response:
        seq = _valid(s.ChatSeqSerializer, request.data)["seq"]
        mark = services.conversation_mark_read(user_id=_me(request), conversation_id=conversation_id, seq=seq)
        return Response({"conversation_id": conversation_id, "last_read_seq": mark})


# --- messages --------------------------------------------------------------------------------


def _send(request: Request, data: dict, **target) -> Response:
    result = services.message_send(
        sender_id=_me(request),
        client_msg_id=data["client_msg_id"],
        kind=data["kind"],
        text=data.get("text", ""),
        content_fields=data.get("content") or None,
        reply_to_seq=data.get("reply_to_seq"),
        mentions=data.get("mentions") or None,
        mention_all=data.get("mention_all", False),
        **target,
    )
    return Response(
        {"message": events.message(result.message), "created": result.created},
        status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
    )


class MessageListView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        parameters=[
            OpenApiParameter("before", int, description="Older than this sequence (scroll up)."),
            OpenApiParameter(
                "after", int, description="Newer than this sequence, oldest first (read forward)."
            ),
            OpenApiParameter("limit", int, description="1-200, default 50."),
        ],
        responses=s.ChatHistorySerializer,
        tags=TAGS,
        summary="History by sequence, in both directions",
    )
    def get(self, request: Request, conversation_id: int) -> Response:
        query = _valid(s.ChatHistoryQuerySerializer, request.query_params)
        messages, has_more = selectors.history(user_id=_me(request), conversation_id=conversation_id, **query)
        return Response({"messages": [events.message(m) for m in messages], "has_more": has_more})

    @extend_schema(request=s.ChatSendSerializer, responses={201: s.ChatSendResultSerializer, 200: s.ChatSendResultSerializer},
                   tags=TAGS, summary="Send a message (idempotent by client_msg_id)")  # fmt: skip
    def post(self, request: Request, conversation_id: int) -> Response:
        return _send(request, _valid(s.ChatSendSerializer, request.data), conversation_id=conversation_id)


class SendView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=s.ChatSendAnywhereSerializer, responses={201: s.ChatSendResultSerializer, 200: s.ChatSendResultSerializer},
                   tags=TAGS, summary="Send to a conversation or, by to_user_id, to a direct chat")  # fmt: skip
    def post(self, request: Request) -> Response:
        data = _valid(s.ChatSendAnywhereSerializer, request.data)
        return _send(
            request, data, conversation_id=data.get("conversation_id"), to_user_id=data.get("to_user_id")
        )


class MessageDetailView(APIView):
    @extend_schema(
        responses=s.ChatMessageSerializer,
        tags=TAGS,
        summary="One message",
        operation_id="messaging_message_get",
    )
    def get(self, request: Request, conversation_id: int, seq: int) -> Response:
        return Response(
            events.message(
                selectors.message_get(user_id=_me(request), conversation_id=conversation_id, seq=seq)
            )
        )

    @extend_schema(responses={204: NO_CONTENT}, tags=TAGS, summary="Delete a message for me")
    def delete(self, request: Request, conversation_id: int, seq: int) -> Response:
        services.message_hide(user_id=_me(request), conversation_id=conversation_id, seq=seq)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RecallView(APIView):
    @extend_schema(request=None, responses=s.ChatMessageSerializer, tags=TAGS,
                   summary="Recall a message (sender within 2 minutes; group owner/admins)")  # fmt: skip
    def post(self, request: Request, conversation_id: int, seq: int) -> Response:
        msg = services.message_recall(user_id=_me(request), conversation_id=conversation_id, seq=seq)
        return Response(events.message(msg))


class ForwardView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=s.ChatForwardSerializer, responses={201: s.ChatForwardResultSerializer}, tags=TAGS,
                   summary="Forward messages to other conversations")  # fmt: skip
    def post(self, request: Request) -> Response:
        data = _valid(s.ChatForwardSerializer, request.data)
        copies = services.message_forward(user_id=_me(request), **data)
        return Response({"messages": [events.message(m) for m in copies]}, status=status.HTTP_201_CREATED)


class SearchView(ListAPIView):
    serializer_class = s.ChatMessageSerializer
    pagination_class = SearchPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Message.objects.none()
        query = _valid(s.ChatSearchQuerySerializer, self.request.query_params)
        return selectors.message_search(
            user_id=_me(self.request), query=query["q"], conversation_id=query.get("conversation_id")
        )

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "q", str, required=True, description="Words (all must match); Chinese by characters."
            ),
            OpenApiParameter("conversation_id", int, description="Only this conversation."),
        ],
        tags=TAGS,
        summary="Search my messages",
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class MediaView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request={"multipart/form-data": s.ChatMediaUploadSerializer}, responses={201: s.ChatMediaSerializer},
                   tags=TAGS, summary="Upload a file to send (then send a message with its media_id)")  # fmt: skip
    def post(self, request: Request) -> Response:
        data = _valid(s.ChatMediaUploadSerializer, request.data)
        att = services.attachment_upload(
            owner_id=_me(request), kind=data["kind"], upload=data["file"], duration=data.get("duration")
        )
        from ..services.media import attachment_content

        return Response({**attachment_content(att), "kind": att.kind}, status=status.HTTP_201_CREATED)


# --- groups ------------------------------------------------------------------------------------


class GroupCreateView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=s.ChatGroupCreateSerializer, responses={201: s.ChatConversationItemSerializer}, tags=GROUP_TAGS,
                   summary="Create a group with some of my friends")  # fmt: skip
    def post(self, request: Request) -> Response:
        data = _valid(s.ChatGroupCreateSerializer, request.data)
        conv = services.group_create(creator_id=_me(request), **data)
        member = selectors.membership_get(user_id=_me(request), conversation_id=conv.pk)
        return Response(_item(member, _me(request)), status=status.HTTP_201_CREATED)


class GroupJoinView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=s.ChatGroupJoinSerializer, responses=s.ChatJoinResultSerializer, tags=GROUP_TAGS,
                   summary="Join a group with an invitation code (link or QR)")  # fmt: skip
    def post(self, request: Request) -> Response:
        conv, joined = services.group_join_by_link(
            user_id=_me(request), code=_valid(s.ChatGroupJoinSerializer, request.data)["code"]
        )
        return Response({"conversation": events.conversation(conv), "joined": joined})


class AvatarView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request={"multipart/form-data": s.ChatAvatarSerializer}, responses=s.ChatConversationSerializer,
                   tags=GROUP_TAGS, summary="Set a group's avatar (owner/admins)")  # fmt: skip
    def put(self, request: Request, conversation_id: int) -> Response:
        data = _valid(s.ChatAvatarSerializer, request.data)
        conv = services.group_avatar_set(
            user_id=_me(request), conversation_id=conversation_id, upload=data["avatar"]
        )
        return Response(events.conversation(conv))


class MemberListView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        responses=s.ChatMemberSerializer(many=True), tags=GROUP_TAGS, summary="Members of a conversation"
    )
    def get(self, request: Request, conversation_id: int) -> Response:
        members = selectors.member_list(user_id=_me(request), conversation_id=conversation_id)
        return Response([events.member(m) for m in members])

    @extend_schema(request=s.ChatInviteSerializer, responses=s.ChatInviteResultSerializer, tags=GROUP_TAGS,
                   summary="Invite friends (waits for approval in approval mode)")  # fmt: skip
    def post(self, request: Request, conversation_id: int) -> Response:
        data = _valid(s.ChatInviteSerializer, request.data)
        outcome = services.group_invite(
            user_id=_me(request), conversation_id=conversation_id, user_ids=data["user_ids"]
        )
        return Response({"added": outcome.added, "requested": outcome.requested})


class MemberDetailView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=s.ChatRoleSerializer, responses=s.ChatMemberSerializer, tags=GROUP_TAGS,
                   summary="Make a member an admin, or an admin a member (owner)")  # fmt: skip
    def patch(self, request: Request, conversation_id: int, user_id: int) -> Response:
        role = _valid(s.ChatRoleSerializer, request.data)["role"]
        member = services.group_set_role(
            user_id=_me(request), conversation_id=conversation_id, target_id=user_id, role=role
        )
        return Response(events.member(member))

    @extend_schema(
        responses={204: NO_CONTENT}, tags=GROUP_TAGS, summary="Remove a member, or leave (my own id)"
    )
    def delete(self, request: Request, conversation_id: int, user_id: int) -> Response:
        services.group_remove_member(user_id=_me(request), conversation_id=conversation_id, target_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TransferView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=s.ChatUserIdSerializer, responses=s.ChatConversationSerializer, tags=GROUP_TAGS,
                   summary="Hand the group to another member (owner)")  # fmt: skip
    def post(self, request: Request, conversation_id: int) -> Response:
        target = _valid(s.ChatUserIdSerializer, request.data)["user_id"]
        conv = services.group_transfer(
            user_id=_me(request), conversation_id=conversation_id, target_id=target
        )
        return Response(events.conversation(conv))


class InviteLinkView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=s.ChatInviteLinkQuerySerializer, responses={201: s.ChatInviteLinkSerializer}, tags=GROUP_TAGS,
                   summary="An invitation code to join the group (what its QR code carries)")  # fmt: skip
    def post(self, request: Request, conversation_id: int) -> Response:
        data = _valid(s.ChatInviteLinkQuerySerializer, request.data)
        code, expires_at = services.group_invite_link(
            user_id=_me(request), conversation_id=conversation_id, **data
        )
        return Response(
            {"code": code, "url": services.group_invite_url(code), "expires_at": expires_at}, status=201
        )

    @extend_schema(
        responses={204: NO_CONTENT}, tags=GROUP_TAGS, summary="Revoke every invitation code (owner/admins)"
    )
    def delete(self, request: Request, conversation_id: int) -> Response:
        services.group_invite_links_revoke(user_id=_me(request), conversation_id=conversation_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InviteQrView(APIView):
    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY}, tags=GROUP_TAGS,
                   summary="The group's QR code (valid 7 days)")  # fmt: skip
    def get(self, request: Request, conversation_id: int) -> HttpResponse:
        code, _expires = services.group_invite_link(user_id=_me(request), conversation_id=conversation_id)
        response = HttpResponse(services.group_invite_qr_png(code), content_type="image/png")
        response["Cache-Control"] = "private, max-age=300"
        return response


class JoinRequestListView(APIView):
    @extend_schema(responses=s.ChatJoinRequestSerializer(many=True), tags=GROUP_TAGS,
                   summary="Pending join requests (owner/admins)")  # fmt: skip
    def get(self, request: Request, conversation_id: int) -> Response:
        rows = selectors.join_request_list(user_id=_me(request), conversation_id=conversation_id)
        return Response([events.join_request(r) for r in rows])


class JoinRequestDecideView(APIView):
    approve = True

    @extend_schema(request=None, responses=s.ChatJoinRequestSerializer, tags=GROUP_TAGS)
    def post(self, request: Request, request_id: int) -> Response:
        req: JoinRequest = services.join_request_decide(
            user_id=_me(request), request_id=request_id, approve=self.approve
        )
        return Response(events.join_request(req))


# --- me ------------------------------------------------------------------------------------------


class SettingsView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses=s.ChatSettingsSerializer, tags=TAGS, summary="My messaging settings")
    def get(self, request: Request) -> Response:
        return Response(events.user_settings(selectors.settings_get(user_id=_me(request))))

    @extend_schema(request=s.ChatSettingsUpdateSerializer, responses=s.ChatSettingsSerializer, tags=TAGS)
    def patch(self, request: Request) -> Response:
        changes = _valid(s.ChatSettingsUpdateSerializer, request.data)
        return Response(events.user_settings(services.settings_update(user_id=_me(request), changes=changes)))


class PresenceView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("user_ids", str, required=True, description="Comma-separated, at most 200.")
        ],
        responses=s.ChatPresenceListSerializer,
        tags=TAGS,
        summary="Online state and last seen (as each user's privacy allows)",
    )
    def get(self, request: Request) -> Response:
        ids = s.id_list(request.query_params.get("user_ids", ""), "user_ids")
        return Response({"presence": selectors.presence_get(viewer_id=_me(request), user_ids=ids)})
