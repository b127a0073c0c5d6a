"""pytest fixtures starting the fake push services and pointing the settings at them.

Use them from a test module: ``from tests.fakes import fixtures`` then ``fake_fcm = fixtures.fake_fcm``.
"""

from __future__ import annotations

import pytest

from superapp.core.push import backends

from .apns import FakeApns
from .fcm import FakeFcm


@pytest.fixture
def fake_fcm(settings, tmp_path):
    """A fake Google OAuth + FCM v1 server; the settings send android and web pushes to it."""
    with FakeFcm() as fake:
        settings.FCM_SERVICE_ACCOUNT_FILE = str(fake.service_account_file(tmp_path))
        settings.FCM_BASE_URL = fake.url
        settings.FCM_PROJECT_ID = ""
        settings.PUSH_BACKENDS = {"android": "fcm", "web": "fcm", "ios": "apns"}
        yield fake
        backends.reset()  # close the backend's connections before the server stops


@pytest.fixture
def fake_apns(settings, tmp_path):
    """A fake APNs (HTTP/2, TLS with a throwaway CA); the settings send iOS pushes to it."""
    with FakeApns(tmp_path) as fake:
        settings.APNS_KEY_FILE = str(fake.key_file(tmp_path))
        settings.APNS_KEY_ID = fake.key_id
        settings.APNS_TEAM_ID = fake.team_id
        settings.APNS_TOPIC = fake.topic
        settings.APNS_BASE_URL = fake.url
        settings.APNS_CA_FILE = str(fake.tls.ca_file)
        settings.PUSH_BACKENDS = {"android": "fcm", "web": "fcm", "ios": "apns"}
        yield fake
        backends.reset()
