"""Reports: users report posts they can see; staff review them in the admin."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from superapp.core.errors import NotFound, ValidationFailed

from .. import selectors
from ..models import Report
from .posts import post_hide


@transaction.atomic
def report_create(*, reporter, post_id: int, reason: str, note: str = "") -> tuple[Report, bool]:
    """Report a post one may see (not one's own). Reporting again updates the report; returns
    ``(report, created)``."""
    if reason not in Report.Reason.values:
        raise ValidationFailed(
            fields={"reason": [_("One of: %(s)s.") % {"s": ", ".join(Report.Reason.values)}]}
        )
    note = (note or "").strip()
    if len(note) > 500:
        raise ValidationFailed(fields={"note": [_("At most 500 characters.")]})
    post = selectors.posts_visible(viewer_id=reporter.pk).filter(pk=post_id).values("pk", "author_id").first()
    if post is None:
        raise NotFound()
    if post["author_id"] == reporter.pk:
        raise ValidationFailed(_("You cannot report your own post."), code="cannot_report_own")
    report, created = Report.objects.get_or_create(
        post_id=post_id, reporter=reporter, defaults={"reason": reason, "note": note}
    )
    if not created and report.status == Report.Status.OPEN:
        report.reason, report.note = reason, note
        report.save(update_fields=["reason", "note"])
    return report, created


@transaction.atomic
def report_review(*, report_ids: Iterable[int], by, action: str) -> int:
    """Staff: act on reports. ``hide`` hides the reported posts (closing every open report of
    them); ``dismiss`` closes the reports and leaves the posts. Returns how many reports."""
    reports = list(Report.objects.select_for_update().filter(pk__in=list(report_ids)).order_by("pk"))
    if action == "hide":
        for post_id in sorted({r.post_id for r in reports}):
            post_hide(post_id=post_id, by=by, reason=_("Hidden after a report."))
        Report.objects.filter(pk__in=[r.pk for r in reports]).exclude(status=Report.Status.HIDDEN).update(
            status=Report.Status.HIDDEN, reviewed_at=timezone.now(), reviewed_by=by
        )
    elif action == "dismiss":
        Report.objects.filter(pk__in=[r.pk for r in reports]).update(
            status=Report.Status.DISMISSED, reviewed_at=timezone.now(), reviewed_by=by
        )
    else:
        raise ValidationFailed(fields={"action": [_("hide or dismiss")]})
    return len(reports)
