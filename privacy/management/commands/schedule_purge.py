"""python manage.py schedule_purge: queue the retention purge, unless one is already waiting.

Each purge queues the next one, every RETENTION_PURGE_INTERVAL_SECONDS; the worker's start runs
this so that the chain exists (and starts again after a crash).
"""

from django.core.management.base import BaseCommand

from privacy.tasks import schedule_purge


class Command(BaseCommand):
    help = "Queue the periodic retention purge unless one is already waiting."

    def handle(self, *args, **options):
        if schedule_purge():
            self.stderr.write("Queued the retention purge.")
