"""python -m bench.seed N: create N live sessions and a staff login in the configured database.

Prints {"sessions": [[session id, credential], ...], "staff_cookie": "<sessionid cookie>"}.
Run with the same environment as the server it seeds, so both use one database and SECRET_KEY.
"""

import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatar_site.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from sessions_app import credentials  # noqa: E402
from sessions_app.models import AvatarSession, SessionStatus  # noqa: E402


def main(count: int):
    now = timezone.now()
    rows = AvatarSession.objects.bulk_create(
        AvatarSession(
            status=SessionStatus.ACTIVE,
            started_at=now,
            visitor_key="bench",
            created_via="page",
            max_session_duration=3600,
        )
        for _ in range(count)
    )
    staff, _ = get_user_model().objects.get_or_create(username="bench-staff", defaults={"is_staff": True})
    client = Client()
    client.force_login(staff)
    print(
        json.dumps(
            {
                "sessions": [[str(row.id), credentials.mint(row.id)] for row in rows],
                "staff_cookie": client.cookies[settings.SESSION_COOKIE_NAME].value,
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]))
