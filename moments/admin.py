"""Staff views of Moments: review reports, hide and show posts; everything else read-only.

Writes go through services (CONVENTIONS 1): hiding a post tells its author and removes it from
every feed at once (``post_hide``); acting on a report hides the post or dismisses the report
(``report_review``). Posts, comments and likes are users' content: staff read them and hide
posts, they do not edit or delete them here.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from superapp.core.errors import ApplicationError

from . import services
from .models import Comment, FriendSetting, Like, Media, MomentsProfile, Notification, Post, Report, Timeline


class ReadOnlyAdmin(admin.ModelAdmin):
    """Staff may look, search and filter; writes belong to the services."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ModerationAdmin(ReadOnlyAdmin):
    """Read-only pages whose actions need the model's change permission."""

    def has_moderate_permission(self, request) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")


class UserIdSearch:
    """Search by a user id or an exact handle (index lookups only, big tables)."""

    user_field = "user"
    search_fields = ("pk",)  # the box is shown; the lookup is below
    search_help_text = _("A user id, or a handle (exact).")

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().lstrip("@").lower()
        if not term:
            return queryset, False
        if term.isdigit():
            return queryset.filter(**{f"{self.user_field}_id": int(term)}), False
        return queryset.filter(**{f"{self.user_field}__handle": term}), False


class MediaInline(admin.TabularInline):
    model = Media
    fields = ("position", "kind", "file", "thumb", "width", "height", "size", "content_type")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Post)
class PostAdmin(UserIdSearch, ModerationAdmin):
    user_field = "author"
    list_display = ("id", "author", "kind", "visibility", "short_text", "created_at", "hidden_at")
    list_filter = ("kind", "visibility", ("hidden_at", admin.EmptyFieldListFilter), "created_at")
    list_select_related = ("author",)
    raw_id_fields = ("author",)
    ordering = ("-id",)
    show_full_result_count = False
    inlines = [MediaInline]
    actions = ["hide", "unhide"]

    @admin.display(description=_("text"))
    def short_text(self, post: Post) -> str:
        return post.text[:60] or post.link_title[:60]

    @admin.action(description=_("Hide the selected posts (their authors are told)"), permissions=["moderate"])
    def hide(self, request, queryset):
        done = 0
        for post_id in queryset.values_list("pk", flat=True):
            try:
                services.post_hide(
                    post_id=post_id, by=request.user, reason=str(_("Hidden by the moderators."))
                )
                done += 1
            except ApplicationError as exc:
                self.message_user(request, f"{post_id}: {exc.message}", messages.ERROR)
        self.message_user(request, ngettext("%d post hidden.", "%d posts hidden.", done) % done)

    @admin.action(description=_("Show the selected posts again"), permissions=["moderate"])
    def unhide(self, request, queryset):
        done = 0
        for post_id in queryset.values_list("pk", flat=True):
            services.post_unhide(post_id=post_id, by=request.user)
            done += 1
        self.message_user(request, ngettext("%d post shown again.", "%d posts shown again.", done) % done)


@admin.register(Report)
class ReportAdmin(UserIdSearch, ModerationAdmin):
    user_field = "reporter"
    list_display = ("id", "post", "post_author", "reporter", "reason", "status", "created_at", "reviewed_by")
    list_filter = ("status", "reason", "created_at")
    list_select_related = ("post", "post__author", "reporter", "reviewed_by")
    raw_id_fields = ("post", "reporter", "reviewed_by")
    ordering = ("status", "-created_at")
    actions = ["hide_posts", "dismiss"]

    @admin.display(description=_("post author"))
    def post_author(self, report: Report):
        return report.post.author

    @admin.action(description=_("Hide the reported posts"), permissions=["moderate"])
    def hide_posts(self, request, queryset):
        try:
            count = services.report_review(
                report_ids=queryset.values_list("pk", flat=True), by=request.user, action="hide"
            )
        except ApplicationError as exc:  # e.g. the feed cache could not be told (503): nothing done
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, ngettext("%d report acted on.", "%d reports acted on.", count) % count)

    @admin.action(description=_("Dismiss the reports (leave the posts)"), permissions=["moderate"])
    def dismiss(self, request, queryset):
        count = services.report_review(
            report_ids=queryset.values_list("pk", flat=True), by=request.user, action="dismiss"
        )
        self.message_user(request, ngettext("%d report dismissed.", "%d reports dismissed.", count) % count)


@admin.register(Comment)
class CommentAdmin(UserIdSearch, ReadOnlyAdmin):
    user_field = "author"
    list_display = ("id", "post", "author", "text", "reply_to_user", "created_at")
    list_filter = ("created_at",)
    list_select_related = ("author", "reply_to_user", "post")
    raw_id_fields = ("post", "author", "reply_to", "reply_to_user")
    ordering = ("-id",)
    show_full_result_count = False


@admin.register(Like)
class LikeAdmin(UserIdSearch, ReadOnlyAdmin):
    list_display = ("id", "post", "user", "created_at")
    list_filter = ("created_at",)
    list_select_related = ("user", "post")
    raw_id_fields = ("post", "user")
    ordering = ("-id",)
    show_full_result_count = False


@admin.register(Timeline)
class TimelineAdmin(UserIdSearch, ReadOnlyAdmin):
    list_display = ("id", "user", "post", "author", "created")
    list_filter = ("created",)
    list_select_related = ("user", "author")
    raw_id_fields = ("user", "post", "author")
    ordering = ("-id",)
    show_full_result_count = False


@admin.register(Notification)
class NotificationAdmin(UserIdSearch, ReadOnlyAdmin):
    user_field = "recipient"
    list_display = ("id", "recipient", "actor", "kind", "post", "created_at", "read_at")
    list_filter = ("kind", "created_at")
    list_select_related = ("recipient", "actor")
    raw_id_fields = ("recipient", "actor", "post", "like", "comment")
    ordering = ("-id",)
    show_full_result_count = False


@admin.register(Media)
class MediaAdmin(UserIdSearch, ReadOnlyAdmin):
    user_field = "owner"
    list_display = ("id", "owner", "kind", "post", "content_type", "size", "created_at")
    list_filter = ("kind", ("post", admin.EmptyFieldListFilter), "created_at")
    list_select_related = ("owner",)
    raw_id_fields = ("owner", "post")
    ordering = ("-id",)
    show_full_result_count = False


@admin.register(MomentsProfile)
class MomentsProfileAdmin(UserIdSearch, ReadOnlyAdmin):
    list_display = ("user", "visible_days")
    list_filter = ("visible_days",)
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    ordering = ("-user_id",)


@admin.register(FriendSetting)
class FriendSettingAdmin(UserIdSearch, ReadOnlyAdmin):
    user_field = "owner"
    list_display = ("owner", "target", "hide_my_posts", "hide_their_posts", "updated_at")
    list_filter = ("hide_my_posts", "hide_their_posts")
    list_select_related = ("owner", "target")
    raw_id_fields = ("owner", "target")
    ordering = ("-id",)
