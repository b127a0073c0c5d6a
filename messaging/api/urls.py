from django.urls import path

from . import views

urlpatterns = [
    path("conversations", views.ConversationListView.as_view(), name="messaging-conversations"),
    path(
        "conversations/<int:conversation_id>",
        views.ConversationDetailView.as_view(),
        name="messaging-conversation",
    ),
    path(
        "conversations/<int:conversation_id>/settings",
        views.ConversationSettingsView.as_view(),
        name="messaging-conversation-settings",
    ),
    path("conversations/<int:conversation_id>/read", views.ReadView.as_view(), name="messaging-read"),
    path(
        "conversations/<int:conversation_id>/messages",
        views.MessageListView.as_view(),
        name="messaging-messages",
    ),
    path(
        "conversations/<int:conversation_id>/messages/<int:seq>",
        views.MessageDetailView.as_view(),
        name="messaging-message",
    ),
    path(
        "conversations/<int:conversation_id>/messages/<int:seq>/recall",
        views.RecallView.as_view(),
        name="messaging-recall",
    ),
    path(
        "conversations/<int:conversation_id>/avatar",
        views.AvatarView.as_view(),
        name="messaging-group-avatar",
    ),
    path(
        "conversations/<int:conversation_id>/members",
        views.MemberListView.as_view(),
        name="messaging-members",
    ),
    path(
        "conversations/<int:conversation_id>/members/<int:user_id>",
        views.MemberDetailView.as_view(),
        name="messaging-member",
    ),
    path(
        "conversations/<int:conversation_id>/transfer",
        views.TransferView.as_view(),
        name="messaging-transfer",
    ),
    path(
        "conversations/<int:conversation_id>/invite-link",
        views.InviteLinkView.as_view(),
        name="messaging-invite-link",
    ),
    path(
        "conversations/<int:conversation_id>/invite-qr.png",
        views.InviteQrView.as_view(),
        name="messaging-invite-qr",
    ),
    path(
        "conversations/<int:conversation_id>/join-requests",
        views.JoinRequestListView.as_view(),
        name="messaging-join-requests",
    ),
    path(
        "join-requests/<int:request_id>/approve",
        views.JoinRequestDecideView.as_view(approve=True),
        name="messaging-join-approve",
    ),
    path(
        "join-requests/<int:request_id>/decline",
        views.JoinRequestDecideView.as_view(approve=False),
        name="messaging-join-decline",
    ),
    path("direct/<int:user_id>", views.DirectConversationView.as_view(), name="messaging-direct"),
    path("groups", views.GroupCreateView.as_view(), name="messaging-groups"),
    path("groups/join", views.GroupJoinView.as_view(), name="messaging-group-join"),
    path("messages", views.SendView.as_view(), name="messaging-send"),
    path("forward", views.ForwardView.as_view(), name="messaging-forward"),
    path("search", views.SearchView.as_view(), name="messaging-search"),
    path("media", views.MediaView.as_view(), name="messaging-media"),
    path("settings", views.SettingsView.as_view(), name="messaging-settings"),
    path("presence", views.PresenceView.as_view(), name="messaging-presence"),
]
