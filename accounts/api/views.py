"""Accounts REST API: thin views that validate input, call a service or selector, render."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from superapp.core.errors import NotFound, ValidationFailed

from .. import selectors, services
from ..models import Block, ContactTag, FriendRequest, Friendship, LoginSession
from . import serializers as s


def _valid(serializer_class, data, **kwargs):
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _tokens(login: services.Login) -> dict:
    return {**login.tokens, "session_id": str(login.session.id)}


NO_CONTENT = OpenApiResponse(description="Done.")


# --- auth ------------------------------------------------------------------------------------


class RegisterView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_scope = "register"

    @extend_schema(request=s.RegisterSerializer, responses={201: s.RegisteredSerializer}, tags=["auth"])
    def post(self, request: Request) -> Response:
        data = _valid(s.RegisterSerializer, request.data)
        user = services.user_register(**data)
        return Response(
            {
                "user_id": user.pk,
                "handle": user.handle,
                "verification_channel": "phone" if user.phone else "email",
                "verification_expires_in": int(settings.VERIFICATION_CODE_TTL.total_seconds()),
            },
            status=status.HTTP_201_CREATED,
        )


class VerifyView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_scope = "verify"

    @extend_schema(
        request=s.VerifySerializer,
        responses=s.TokensSerializer,
        tags=["auth"],
        summary="Prove the phone/email with the code; logs in",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.VerifySerializer, request.data)
        login = services.user_verify(
            **data, user_agent=request.META.get("HTTP_USER_AGENT", ""), ip=request.META.get("REMOTE_ADDR")
        )
        return Response(_tokens(login))


class ResendView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_scope = "verify"

    @extend_schema(request=s.ResendSerializer, responses={202: NO_CONTENT}, tags=["auth"])
    def post(self, request: Request) -> Response:
        services.verification_code_resend(**_valid(s.ResendSerializer, request.data))
        return Response(status=status.HTTP_202_ACCEPTED)


class LoginView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_scope = "auth"

    @extend_schema(request=s.LoginSerializer, responses=s.TokensSerializer, tags=["auth"])
    def post(self, request: Request) -> Response:
        data = _valid(s.LoginSerializer, request.data)
        return Response(_tokens(services.user_login(request=request, **data)))


class RefreshView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_scope = "auth"

    @extend_schema(
        request=s.RefreshSerializer,
        responses=s.RefreshedSerializer,
        tags=["auth"],
        summary="Rotate the refresh token (the old one stops working)",
    )
    def post(self, request: Request) -> Response:
        return Response(services.token_refresh(**_valid(s.RefreshSerializer, request.data)))


class LogoutView(APIView):
    permission_classes = [AllowAny]
    throttle_scope = "auth"

    @extend_schema(
        request=s.LogoutSerializer,
        responses={204: NO_CONTENT},
        tags=["auth"],
        summary="End this login session (all its refresh tokens)",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.LogoutSerializer, request.data)
        user = request.user if request.user else None
        services.user_logout(
            user=user, session_id=getattr(user, "login_session_id", None), refresh=data.get("refresh")
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionListView(ListAPIView):
    serializer_class = s.SessionSerializer
    pagination_class = None

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return LoginSession.objects.none()
        return selectors.session_list(user=self.request.user).order_by("-last_seen_at")

    def get_serializer_context(self):
        return {
            **super().get_serializer_context(),
            "current_session_id": getattr(self.request.user, "login_session_id", None),
        }

    @extend_schema(tags=["auth"], summary="My open login sessions")
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class SessionDetailView(APIView):
    @extend_schema(responses={204: NO_CONTENT}, tags=["auth"], summary="Log a device out")
    def delete(self, request: Request, session_id) -> Response:
        services.session_revoke(user=request.user, session_id=session_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TicketView(APIView):
    @extend_schema(
        request=None,
        responses={201: s.TicketSerializer},
        tags=["realtime"],
        summary="A single-use, 60-second ticket to open /ws/",
    )
    def post(self, request: Request) -> Response:
        ticket = services.ws_ticket_create(user=request.user, session_id=request.user.login_session_id)
        return Response({"ticket": ticket, "expires_in": settings.WS_TICKET_TTL_SECONDS}, status=201)


# --- me and profiles ---------------------------------------------------------------------------


class MeView(APIView):
    @extend_schema(responses=s.MeSerializer, tags=["me"])
    def get(self, request: Request) -> Response:
        return Response(s.MeSerializer(request.user).data)

    @extend_schema(request=s.MeUpdateSerializer, responses=s.MeSerializer, tags=["me"])
    def patch(self, request: Request) -> Response:
        changes = _valid(s.MeUpdateSerializer, request.data)
        user = services.profile_update(user=request.user, changes=changes)
        return Response(s.MeSerializer(user).data)


class AvatarView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": s.AvatarUploadSerializer}, responses=s.MeSerializer, tags=["me"]
    )
    def put(self, request: Request) -> Response:
        data = _valid(s.AvatarUploadSerializer, request.data)
        user = services.avatar_set(user=request.user, upload=data["avatar"])
        return Response(s.MeSerializer(user).data)

    post = put

    @extend_schema(request=None, responses=s.MeSerializer, tags=["me"])
    def delete(self, request: Request) -> Response:
        return Response(s.MeSerializer(services.avatar_remove(user=request.user)).data)


class FriendCodeView(APIView):
    @extend_schema(
        responses=s.FriendCodeSerializer, tags=["me"], summary="My friend code (what the QR carries)"
    )
    def get(self, request: Request) -> Response:
        return Response(
            {
                "url": services.friend_qr_url(user=request.user),
                "code": services.friend_qr_token(user=request.user),
                "expires_in": int(settings.FRIEND_QR_TTL.total_seconds()),
            }
        )


class FriendQrPngView(APIView):
    @extend_schema(
        responses={(200, "image/png"): OpenApiTypes.BINARY}, tags=["me"], summary="My friend QR code"
    )
    def get(self, request: Request) -> HttpResponse:
        response = HttpResponse(services.friend_qr_png(user=request.user), content_type="image/png")
        response["Cache-Control"] = "private, max-age=300"
        return response


class UserDetailView(APIView):
    @extend_schema(
        responses=s.ProfileSerializer,
        tags=["contacts"],
        summary="A contact's profile",
        description="Visible to the user, their contacts and anyone with a pending friend request either "
        "way; to everyone else it does not exist (ids are sequential: no enumeration).",
    )
    def get(self, request: Request, user_id: int) -> Response:
        user = selectors.user_get(user_id=user_id)
        if not selectors.profile_visible(viewer=request.user, target=user):
            raise NotFound()
        friendship = selectors.friendship_list(user=request.user).filter(friend_id=user.pk).first()
        return Response(
            {
                "user": s.UserPublicSerializer(user).data,
                "is_friend": selectors.are_friends(user_a=request.user.pk, user_b=user.pk),
                "remark": friendship.remark if friendship else None,
            }
        )


# --- contacts ----------------------------------------------------------------------------------


class SearchView(APIView):
    throttle_scope = "contact_search"

    @extend_schema(
        parameters=[OpenApiParameter("q", str, required=True, description="Exact handle or phone.")],
        responses=s.SearchResultSerializer,
        tags=["contacts"],
    )
    def get(self, request: Request) -> Response:
        query = _valid(s.SearchQuerySerializer, request.query_params)
        found = selectors.user_search(viewer=request.user, query=query["q"])
        if found is None:
            raise NotFound(_("No user matches, or they cannot be found this way."), code="user_not_found")
        return Response(
            {
                "user": s.UserPublicSerializer(found).data,
                "is_friend": selectors.are_friends(user_a=request.user.pk, user_b=found.pk),
                "add_token": services.friend_search_token(viewer=request.user, target=found),
            }
        )


class QrResolveView(APIView):
    @extend_schema(
        request=s.QrResolveSerializer,
        responses=s.QrResolvedSerializer,
        tags=["contacts"],
        summary="What a scanned friend QR code leads to",
    )
    def post(self, request: Request) -> Response:
        code = _valid(s.QrResolveSerializer, request.data)["code"]
        target = services.friend_qr_resolve(viewer=request.user, code=code)
        is_friend = target.pk == request.user.pk or selectors.are_friends(
            user_a=request.user.pk, user_b=target.pk
        )
        return Response(
            {
                "action": "open_profile" if is_friend else "add_friend",
                "user": s.UserPublicSerializer(target).data,
                "qr_code": code.split("code=", 1)[-1],
            }
        )


class FriendRequestListView(ListAPIView):
    serializer_class = s.FriendRequestSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return FriendRequest.objects.none()
        direction = self.request.query_params.get("direction", "incoming")
        if direction not in ("incoming", "outgoing"):
            raise ValidationFailed(fields={"direction": [_("incoming or outgoing")]})
        qs = selectors.friend_request_list(user=self.request.user, direction=direction)
        wanted = self.request.query_params.get("status")
        if wanted:
            if wanted not in FriendRequest.Status.values:
                raise ValidationFailed(fields={"status": [_("pending, accepted or declined")]})
            qs = qs.filter(status=wanted)
        return qs

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "direction", str, enum=["incoming", "outgoing"], description="Default incoming."
            ),
            OpenApiParameter("status", str, enum=["pending", "accepted", "declined"]),
        ],
        tags=["contacts"],
        summary="Friend requests I received or sent",
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=s.FriendRequestCreateSerializer,
        responses={201: s.FriendRequestOutcomeSerializer},
        tags=["contacts"],
        summary="Ask someone to be friends",
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.FriendRequestCreateSerializer, request.data)
        outcome = services.friend_request_send(from_user=request.user, **data)
        return Response(
            {
                "request": s.FriendRequestSerializer(outcome.request).data,
                "became_friends": outcome.became_friends,
            },
            status=status.HTTP_201_CREATED,
        )


class FriendRequestAcceptView(APIView):
    @extend_schema(request=s.AcceptSerializer, responses=s.FriendRequestSerializer, tags=["contacts"])
    def post(self, request: Request, request_id: int) -> Response:
        data = _valid(s.AcceptSerializer, request.data)
        req = services.friend_request_accept(user=request.user, request_id=request_id, **data)
        return Response(s.FriendRequestSerializer(req).data)


class FriendRequestDeclineView(APIView):
    @extend_schema(request=None, responses=s.FriendRequestSerializer, tags=["contacts"])
    def post(self, request: Request, request_id: int) -> Response:
        req = services.friend_request_decline(user=request.user, request_id=request_id)
        return Response(s.FriendRequestSerializer(req).data)


class FriendListView(ListAPIView):
    serializer_class = s.FriendSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Friendship.objects.none()
        return selectors.friendship_list(user=self.request.user)

    @extend_schema(tags=["contacts"], summary="My friends")
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class FriendDetailView(APIView):
    @extend_schema(responses=s.FriendSerializer, tags=["contacts"])
    def get(self, request: Request, user_id: int) -> Response:
        return Response(
            s.FriendSerializer(selectors.friendship_get(user=request.user, friend_id=user_id)).data
        )

    @extend_schema(
        request=s.FriendUpdateSerializer,
        responses=s.FriendSerializer,
        tags=["contacts"],
        summary="Set a friend's remark name and tags",
    )
    def patch(self, request: Request, user_id: int) -> Response:
        data = _valid(s.FriendUpdateSerializer, request.data)
        services.friend_update(user=request.user, friend_id=user_id, **data)
        return Response(
            s.FriendSerializer(selectors.friendship_get(user=request.user, friend_id=user_id)).data
        )

    @extend_schema(responses={204: NO_CONTENT}, tags=["contacts"], summary="Delete a friend")
    def delete(self, request: Request, user_id: int) -> Response:
        services.friend_remove(user=request.user, friend_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TagListView(ListAPIView):
    serializer_class = s.TagSerializer
    pagination_class = None
    parser_classes = [JSONParser]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ContactTag.objects.none()
        return selectors.tag_list(owner=self.request.user).order_by("name")

    @extend_schema(tags=["contacts"], summary="My contact tags")
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(request=s.TagSerializer, responses={201: s.TagSerializer}, tags=["contacts"])
    def post(self, request: Request) -> Response:
        data = _valid(s.TagSerializer, request.data)
        tag = services.tag_create(owner=request.user, **data)
        return Response(s.TagSerializer(tag).data, status=status.HTTP_201_CREATED)


class TagDetailView(APIView):
    @extend_schema(request=s.TagUpdateSerializer, responses=s.TagSerializer, tags=["contacts"])
    def patch(self, request: Request, tag_id: int) -> Response:
        data = _valid(s.TagUpdateSerializer, request.data)
        return Response(s.TagSerializer(services.tag_update(owner=request.user, tag_id=tag_id, **data)).data)

    @extend_schema(responses={204: NO_CONTENT}, tags=["contacts"])
    def delete(self, request: Request, tag_id: int) -> Response:
        services.tag_delete(owner=request.user, tag_id=tag_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BlockListView(ListAPIView):
    serializer_class = s.BlockSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Block.objects.none()
        return selectors.block_list(user=self.request.user)

    @extend_schema(tags=["contacts"], summary="Users I blocked")
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(request=s.BlockCreateSerializer, responses={201: s.BlockSerializer}, tags=["contacts"])
    def post(self, request: Request) -> Response:
        data = _valid(s.BlockCreateSerializer, request.data)
        block = services.block_add(user=request.user, target_id=data["user_id"])
        return Response(s.BlockSerializer(block).data, status=status.HTTP_201_CREATED)


class BlockDetailView(APIView):
    @extend_schema(responses={204: NO_CONTENT}, tags=["contacts"], summary="Unblock")
    def delete(self, request: Request, user_id: int) -> Response:
        services.block_remove(user=request.user, target_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
