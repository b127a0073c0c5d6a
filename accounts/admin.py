"""Staff views of the accounts tables.

Writes go through services, as everywhere else (CONVENTIONS 1): a user created here is created by
``user_create_verified``, and a login session is ended by ``session_revoke`` (which also tells
the user's devices and closes the session's sockets). Profile fields, verification codes and
contacts are shown read-only: their writes publish events to the user and the user's friends
(``profile_update``, ``friend_remove``, ...) and keep invariants (a friendship is two rows) that
a plain admin form would bypass. What staff may change directly is Django's own account
administration: ``is_active``, staff status, groups and permissions, and the password; turning
an account off or setting its password also ends all its login sessions. Users are never deleted
here (deactivate them).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import authenticate
from django.contrib.auth import forms as auth_forms
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from superapp.core.errors import ApplicationError

from . import services
from .identifiers import normalize_email, normalize_handle, normalize_phone
from .models import Block, ContactTag, FriendRequest, Friendship, LoginSession, User, VerificationCode


def _thumb(user: User | None, size: int) -> str:
    if user is None or not user.avatar_thumb:
        return "-"
    return format_html(
        '<img src="{}" width="{}" height="{}" style="border-radius:4px;object-fit:cover" alt="">',
        user.avatar_thumb.url,
        size,
        size,
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Staff may look, search and filter; writes belong to the services."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- the login page ------------------------------------------------------------------------------


class AdminLoginForm(AdminAuthenticationForm):
    """The admin's login form, through our backend, which takes ``login`` (handle, phone or email).

    Django's form calls ``authenticate(username=...)``, which ``LoginBackend`` ignores, so no one
    could log in. Passing ``login=`` also makes django-axes count admin failures under the same
    account key as API logins: one lockout for both doors.
    """

    def clean(self):
        login = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if login is not None and password:
            self.user_cache = authenticate(self.request, login=login, password=password)
            if self.user_cache is None:
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


admin.site.login_form = AdminLoginForm


def _end_sessions(users: QuerySet[User]) -> int:
    """End every open login session of these users through the service (devices are told)."""
    ended = 0
    for session in LoginSession.objects.filter(user__in=users, revoked_at__isnull=True).select_related(
        "user"
    ):
        services.session_revoke(user=session.user, session_id=session.pk, reason="admin")
        ended += 1
    return ended


# --- users --------------------------------------------------------------------------------------


class UserCreationForm(auth_forms.BaseUserCreationForm):
    """Handle, display name, phone or email, and a password; saved by ``user_create_verified``."""

    class Meta:
        model = User
        fields = ("handle", "display_name", "phone", "email")

    @staticmethod
    def _normalized(normalize, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return normalize(value)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_handle(self) -> str | None:
        return self._normalized(normalize_handle, self.cleaned_data.get("handle"))

    def clean_phone(self) -> str | None:
        return self._normalized(normalize_phone, self.cleaned_data.get("phone"))

    def clean_email(self) -> str | None:
        return self._normalized(normalize_email, self.cleaned_data.get("email"))

    def clean(self):
        cleaned = super().clean()
        has_contact = cleaned.get("phone") or cleaned.get("email")
        if not has_contact and not self.has_error("phone") and not self.has_error("email"):
            raise forms.ValidationError(_("Give a phone number or an email address."))
        return cleaned


class UserChangeForm(auth_forms.UserChangeForm):
    class Meta(auth_forms.UserChangeForm.Meta):
        model = User
        fields = "__all__"
        field_classes: dict = {}


class AvatarFilter(admin.SimpleListFilter):
    title = _("has avatar")
    parameter_name = "avatar"

    def lookups(self, request, model_admin):
        return (("yes", _("Yes")), ("no", _("No")))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(avatar="")
        if self.value() == "no":
            return queryset.filter(avatar="")
        return queryset


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    list_display = (
        "handle",
        "avatar_preview_small",
        "display_name",
        "phone",
        "email",
        "is_verified",
        "is_active",
        "is_staff",
        "date_joined",
        "last_login",
    )
    list_display_links = ("handle", "avatar_preview_small")
    list_filter = (
        "is_verified",
        "is_active",
        "is_staff",
        "is_superuser",
        "findable_by_phone",
        "findable_by_handle",
        "friend_requests_need_approval",
        AvatarFilter,
        "date_joined",
        "groups",
    )
    search_fields = ("handle", "phone", "email", "display_name")
    search_help_text = _("Handle, phone, email or display name.")
    ordering = ("-id",)
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("handle", "password")}),
        (_("Profile"), {"fields": ("display_name", "avatar_preview", "region", "bio", "handle_changed_at")}),
        (_("Contact"), {"fields": ("phone", "email", "is_verified")}),
        (
            _("Privacy"),
            {"fields": ("findable_by_phone", "findable_by_handle", "friend_requests_need_approval")},
        ),
        (
            _("Permissions"),
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        (_("Important dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("handle", "display_name", "phone", "email", "password1", "password2"),
            },
        ),
    )
    # Profile, contact and privacy fields are the user's own (profile_update tells their friends);
    # is_verified means "proved with a code".
    readonly_fields = (
        "handle",
        "display_name",
        "avatar_preview",
        "region",
        "bio",
        "handle_changed_at",
        "phone",
        "email",
        "is_verified",
        "findable_by_phone",
        "findable_by_handle",
        "friend_requests_need_approval",
        "last_login",
        "date_joined",
    )
    actions = ("end_all_sessions",)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        # Deleting cascades through friendships, messages and events without telling anyone's
        # devices; deactivate instead (is_active) until an account-deletion service exists.
        return False

    @admin.display(description=_("Avatar"))
    def avatar_preview(self, obj: User) -> str:
        return _thumb(obj, 132)

    @admin.display(description=_("Avatar"))
    def avatar_preview_small(self, obj: User) -> str:
        return _thumb(obj, 32)

    def save_model(self, request, obj, form, change):
        if change:
            # Only the fields staff changed: a full save would overwrite a profile edit the user
            # made since the page was loaded. (Groups and permissions are saved by save_related.)
            concrete = {f.name for f in User._meta.concrete_fields}
            changed = [name for name in form.changed_data if name in concrete]
            if changed:
                obj.save(update_fields=changed)
            if "is_active" in changed and not obj.is_active:
                _end_sessions(User.objects.filter(pk=obj.pk))
            return
        data = form.cleaned_data
        created = services.user_create_verified(
            handle=data["handle"],
            password=data["password1"],
            display_name=data["display_name"],
            phone=data.get("phone"),
            email=data.get("email"),
        )
        # The admin goes on with the form's instance (log entry, redirect): make it the saved row.
        obj.pk = created.pk
        obj._state.adding = False
        obj._state.db = created._state.db

    def user_change_password(self, request, id, form_url=""):
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:  # the password was set
            _end_sessions(User.objects.filter(pk=id))
        return response

    @admin.action(description=_("End all login sessions (signs out every device)"), permissions=["change"])
    def end_all_sessions(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        ended = _end_sessions(queryset)
        self.message_user(
            request,
            ngettext("%(count)d login session ended.", "%(count)d login sessions ended.", ended)
            % {"count": ended},
            messages.SUCCESS,
        )


# --- verification codes and login sessions -------------------------------------------------------


class CodeStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("open", _("Usable")), ("used", _("Used")), ("expired", _("Expired, unused")))

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "open":
            return queryset.filter(used_at__isnull=True, expires_at__gt=now)
        if self.value() == "used":
            return queryset.filter(used_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(used_at__isnull=True, expires_at__lte=now)
        return queryset


@admin.register(VerificationCode)
class VerificationCodeAdmin(ReadOnlyAdmin):
    # ``code_hash`` is never listed: not in the list, not in the page, not searchable.
    fields = ("user", "channel", "destination", "attempts", "created_at", "expires_at", "used_at")
    readonly_fields = fields
    list_display = ("id", "user", "channel", "destination", "attempts", "created_at", "expires_at", "used_at")
    list_filter = (CodeStateFilter, "channel", "created_at")
    search_fields = ("user__handle", "destination")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    ordering = ("-id",)


class SessionStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("active", _("Active")), ("revoked", _("Ended")), ("expired", _("Expired")))

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True, expires_at__gt=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


@admin.register(LoginSession)
class LoginSessionAdmin(ReadOnlyAdmin):
    # ``refresh_jti`` stays out of sight: it is not a token, but nobody needs it.
    fields = (
        "id",
        "user",
        "device_name",
        "user_agent",
        "ip_address",
        "created_at",
        "last_seen_at",
        "expires_at",
        "revoked_at",
        "revoke_reason",
    )
    readonly_fields = fields
    list_display = (
        "id",
        "user",
        "device_name",
        "ip_address",
        "state",
        "created_at",
        "last_seen_at",
        "expires_at",
        "revoke_reason",
    )
    list_filter = (SessionStateFilter, "revoke_reason", "created_at")
    # ``id__exact`` compares the uuid as text, so any search term is valid SQL.
    search_fields = ("id__exact", "user__handle", "device_name", "ip_address")
    search_help_text = _("Session id, user handle, device name or IP address.")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    ordering = ("-created_at",)
    actions = ("revoke",)

    @admin.display(description=_("state"))
    def state(self, obj: LoginSession) -> str:
        if obj.revoked_at is not None:
            return str(_("Ended"))
        if obj.expires_at <= timezone.now():
            return str(_("Expired"))
        return str(_("Active"))

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        # The page is read-only for everyone; ending sessions needs the model's change permission.
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(
        description=_("Revoke the selected sessions (signs those devices out)"), permissions=["revoke"]
    )
    def revoke(self, request: HttpRequest, queryset: QuerySet[LoginSession]) -> None:
        revoked = 0
        for session in queryset.filter(revoked_at__isnull=True).select_related("user"):
            services.session_revoke(user=session.user, session_id=session.pk, reason="admin")
            revoked += 1
        self.message_user(
            request,
            ngettext("%(count)d session revoked.", "%(count)d sessions revoked.", revoked)
            % {"count": revoked},
            messages.SUCCESS,
        )


# --- contacts -----------------------------------------------------------------------------------
# raw_id_fields keep a user <select> of the whole table out of any form that is ever enabled here.


@admin.register(FriendRequest)
class FriendRequestAdmin(ReadOnlyAdmin):
    list_display = ("id", "from_user", "to_user", "status", "source", "created_at", "responded_at")
    list_filter = ("status", "source", "created_at")
    search_fields = ("from_user__handle", "to_user__handle", "note")
    list_select_related = ("from_user", "to_user")
    raw_id_fields = ("from_user", "to_user")
    ordering = ("-id",)


@admin.register(Friendship)
class FriendshipAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "friend", "remark", "source", "created_at")
    list_filter = ("source", "created_at")
    search_fields = ("user__handle", "friend__handle", "remark")
    list_select_related = ("user", "friend")
    raw_id_fields = ("user", "friend")
    ordering = ("-id",)


@admin.register(ContactTag)
class ContactTagAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "owner", "member_count", "created_at")
    list_filter = ("created_at",)
    search_fields = ("name", "owner__handle")
    list_select_related = ("owner",)
    raw_id_fields = ("owner", "members")
    ordering = ("-id",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_member_count=Count("members"))

    @admin.display(description=_("members"), ordering="_member_count")
    def member_count(self, obj: ContactTag) -> int:
        return obj._member_count  # type: ignore[attr-defined]


@admin.register(Block)
class BlockAdmin(ReadOnlyAdmin):
    list_display = ("id", "blocker", "blocked", "created_at")
    list_filter = ("created_at",)
    search_fields = ("blocker__handle", "blocked__handle")
    list_select_related = ("blocker", "blocked")
    raw_id_fields = ("blocker", "blocked")
    ordering = ("-id",)
