"""Staff read moments the same way in the admin as on the dashboard."""

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User

from sessions_app.models import AvatarSession, SessionStatus

pytestmark = pytest.mark.django_db


def test_the_admin_writes_moments_year_first_to_the_second(client):
    client.force_login(User.objects.create_superuser("boss", password="x"))
    AvatarSession.objects.create(status=SessionStatus.ENDED, started_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    page = client.get("/admin/sessions_app/avatarsession/?status__exact=ended").content.decode()
    assert "2026-01-02 03:04:05" in page
