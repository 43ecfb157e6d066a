"""One reaper pass, for production schedulers (cron, systemd timer) when REAPER_INTERVAL_SECONDS=0."""

import asyncio

from django.core.management.base import BaseCommand

from sessions_app import lifecycle


class Command(BaseCommand):
    help = "Stop orphaned sessions at LiveAvatar, expire tokens never started, reconcile ended transcripts."

    def handle(self, *args, **options):
        counts = asyncio.run(lifecycle.reap_orphans())
        self.stdout.write(", ".join(f"{name}: {count}" for name, count in counts.items()))
