from django.urls import path

from . import views

urlpatterns = [
    path("feed", views.FeedView.as_view(), name="moments-feed"),
    path("posts", views.PostCreateView.as_view(), name="moments-posts"),
    path("posts/<int:post_id>", views.PostDetailView.as_view(), name="moments-post"),
    path("posts/<int:post_id>/like", views.LikeView.as_view(), name="moments-post-like"),
    path("posts/<int:post_id>/comments", views.CommentListView.as_view(), name="moments-post-comments"),
    path("posts/<int:post_id>/report", views.ReportView.as_view(), name="moments-post-report"),
    path("comments/<int:comment_id>", views.CommentDetailView.as_view(), name="moments-comment"),
    path("media", views.MediaUploadView.as_view(), name="moments-media"),
    path("users/<int:user_id>/posts", views.AlbumView.as_view(), name="moments-album"),
    path("notifications", views.NotificationListView.as_view(), name="moments-notifications"),
    path("notifications/unread-count", views.UnreadCountView.as_view(), name="moments-unread-count"),
    path("notifications/read", views.MarkReadView.as_view(), name="moments-notifications-read"),
    path("settings", views.SettingsView.as_view(), name="moments-settings"),
    path("friend-settings", views.FriendSettingListView.as_view(), name="moments-friend-settings"),
    path("friend-settings/<int:user_id>", views.FriendSettingView.as_view(), name="moments-friend-setting"),
]
