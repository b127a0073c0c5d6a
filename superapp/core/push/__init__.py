"""Push notifications to users' phones and browsers: the plumbing every app uses.

    from superapp.core import push

    push.notify_users(                 # from a Celery task, outside a transaction
        user_ids=[...],
        notification=push.Notification(title="...", body="...", data={"conversation_id": "12"},
                                       collapse_key="conv-12", badge=3),
    )                                  # -> push.DeliverySummary (one result per device)
    push.notify_users_later(user_ids=[...], notification=...)   # from a service: after commit
    push.devices_disable_for_session(session_id=...)            # when a login session ends

Devices register through ``/api/v1/push/devices``. Backends per platform come from
``PUSH_BACKENDS`` (console by default; FCM HTTP v1 and APNs). See ``docs/push.md``.
"""

from . import checks  # noqa: F401  (registers the system check)
from .notification import DeliverySummary, DeviceResult, Notification
from .services import (
    device_delete,
    device_register,
    devices_disable,
    devices_disable_for_session,
    notify_users,
    notify_users_later,
)
from .tasks import push_deliver  # registers the task wherever Django is set up

__all__ = [
    "DeliverySummary",
    "DeviceResult",
    "Notification",
    "device_delete",
    "device_register",
    "devices_disable",
    "devices_disable_for_session",
    "notify_users",
    "notify_users_later",
    "push_deliver",
]
