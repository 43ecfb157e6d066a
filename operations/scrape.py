"""One scrape: the series of every process (multiprocess mode) plus what only the database knows."""

from __future__ import annotations

import glob
import os
import re

from django.db.models import Count
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from profiles.models import AvatarProfile
from sessions_app.models import LIVE_STATUSES, AvatarSession

from .metrics import multiprocess_dir

_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


class LiveSessions:
    """avatar_site_live_sessions{profile, status}, counted in the database at scrape time, so that it
    is right however many processes there are."""

    def collect(self):
        family = GaugeMetricFamily(
            "avatar_site_live_sessions", "Sessions not over yet, by profile and status.", labels=["profile", "status"]
        )
        counts = {
            (slug or "", status): n
            for slug, status, n in AvatarSession.objects.live()
            .order_by()
            .values_list("profile__slug", "status")
            .annotate(Count("id"))
        }
        for slug in AvatarProfile.objects.values_list("slug", flat=True):
            for status in LIVE_STATUSES:
                family.add_metric([slug, status], counts.pop((slug, status), 0))
        for (slug, status), n in counts.items():  # sessions of no profile
            family.add_metric([slug, status], n)
        yield family


def _forget_dead_processes(path: str) -> None:
    """Drop the live gauges (open sockets, processes) of processes that are gone: a killed Daphne
    never says so itself. The processes share this machine, since they share the directory."""
    for name in glob.glob(os.path.join(path, "gauge_live*.db")):
        match = _LIVE_GAUGE_FILE.search(name)
        if not match:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, path)
        except PermissionError:  # alive, another user's
            pass


def exposition() -> bytes:
    """The Prometheus text of every series (sync: it reads files and the database)."""
    path = multiprocess_dir()
    live = CollectorRegistry()
    live.register(LiveSessions())
    if path is None:
        return generate_latest(REGISTRY) + generate_latest(live)
    _forget_dead_processes(path)
    processes = CollectorRegistry()
    multiprocess.MultiProcessCollector(processes, path)
    return generate_latest(processes) + generate_latest(live)
