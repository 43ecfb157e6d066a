"""A profile's live-session cap under a rush: 20 visits at once, each starting its session as soon
as it has a token, over two Daphne processes on PostgreSQL, never make more live sessions than the cap."""

import json
import re
import threading
import time

import httpx

from profiles.models import AvatarProfile
from sessions_app.emulator import agent
from sessions_app.emulator.models import EmulatedSession
from sessions_app.models import LIVE_STATUSES, AvatarSession

VISITS = 20
CAP = 3


def visit_and_start(server_url: str, barrier: threading.Barrier) -> tuple[int, str]:
    """One visitor: open the page, and with a token start the session at once (as the page does)."""
    with httpx.Client(base_url=server_url, timeout=30) as browser:
        barrier.wait()
        page = browser.get("/p/caps/")
        found = re.search(r'<script id="avatar-config" type="application/json">(.*?)</script>', page.text)
        config = json.loads(found.group(1))
        if page.status_code != 200:
            return page.status_code, config["error"]
        started = browser.post(
            "/liveavatar-emulator/v1/sessions/start", headers={"Authorization": f"Bearer {config['session_token']}"}
        )
        assert started.status_code == 201
        event = {"seq": 1, "ts": int(time.time() * 1000), "source": "client", "event": {"event_type": "client.started"}}
        assert browser.post(config["events_http_url"], json={"events": [event]}).json()["acked"] == [1]
        return 200, ""


def test_twenty_parallel_visits_over_two_processes_never_exceed_the_cap(make_daphne_server):
    AvatarProfile.objects.create(slug="caps", name="Caps", avatar_id=agent.SANDBOX_AVATAR_ID, max_live_sessions=CAP)
    # Rate limits are per visitor and address; all 20 come from 127.0.0.1 here.
    env = {"MINT_RATE_PER_ADDRESS_PER_MINUTE": "1000"}
    servers = [make_daphne_server(env=env), make_daphne_server(env=env)]
    barrier = threading.Barrier(VISITS)
    results = [None] * VISITS

    def run(i):
        results[i] = visit_and_start(servers[i % 2].url, barrier)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(VISITS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    statuses = [status for status, _ in results]
    assert statuses.count(200) == CAP and statuses.count(429) == VISITS - CAP
    # The others are told why, and when a place frees up.
    for status, words in results:
        if status == 429:
            assert words.startswith("This avatar is already in 3 conversations, as many as it may hold at once.")
            assert "A place frees up as soon as one of them ends, by " in words
    assert AvatarSession.objects.filter(status__in=LIVE_STATUSES).count() == CAP
    assert AvatarSession.objects.count() == CAP  # a refused visit stores nothing
    assert (
        EmulatedSession.objects.count() == CAP
        and EmulatedSession.objects.filter(started_at__isnull=False).count() == CAP
    )
