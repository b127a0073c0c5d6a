from django.urls import path

from . import views

urlpatterns = [
    path("auth/register", views.RegisterView.as_view(), name="auth-register"),
    path("auth/verify", views.VerifyView.as_view(), name="auth-verify"),
    path("auth/verify/resend", views.ResendView.as_view(), name="auth-verify-resend"),
    path("auth/login", views.LoginView.as_view(), name="auth-login"),
    path("auth/refresh", views.RefreshView.as_view(), name="auth-refresh"),
    path("auth/logout", views.LogoutView.as_view(), name="auth-logout"),
    path("auth/sessions", views.SessionListView.as_view(), name="auth-sessions"),
    path("auth/sessions/<uuid:session_id>", views.SessionDetailView.as_view(), name="auth-session"),
    path("realtime/ticket", views.TicketView.as_view(), name="realtime-ticket"),
    path("me", views.MeView.as_view(), name="me"),
    path("me/avatar", views.AvatarView.as_view(), name="me-avatar"),
    path("me/friend-code", views.FriendCodeView.as_view(), name="me-friend-code"),
    path("me/friend-code.png", views.FriendQrPngView.as_view(), name="me-friend-qr"),
    path("users/<int:user_id>", views.UserDetailView.as_view(), name="user-detail"),
    path("contacts/search", views.SearchView.as_view(), name="contacts-search"),
    path("contacts/resolve-qr", views.QrResolveView.as_view(), name="contacts-resolve-qr"),
    path("contacts/requests", views.FriendRequestListView.as_view(), name="contacts-requests"),
    path(
        "contacts/requests/<int:request_id>/accept",
        views.FriendRequestAcceptView.as_view(),
        name="contacts-request-accept",
    ),
    path(
        "contacts/requests/<int:request_id>/decline",
        views.FriendRequestDeclineView.as_view(),
        name="contacts-request-decline",
    ),
    path("contacts/friends", views.FriendListView.as_view(), name="contacts-friends"),
    path("contacts/friends/<int:user_id>", views.FriendDetailView.as_view(), name="contacts-friend"),
    path("contacts/tags", views.TagListView.as_view(), name="contacts-tags"),
    path("contacts/tags/<int:tag_id>", views.TagDetailView.as_view(), name="contacts-tag"),
    path("contacts/blocks", views.BlockListView.as_view(), name="contacts-blocks"),
    path("contacts/blocks/<int:user_id>", views.BlockDetailView.as_view(), name="contacts-block"),
]
