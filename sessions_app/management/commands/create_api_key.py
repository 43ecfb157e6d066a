"""python manage.py create_api_key --name NAME --scopes sessions:read,sessions:write

Prints the key alone on stdout (KEY=$(python manage.py create_api_key ...) works); it is stored
only as a hash, so this is the one time it can be read.
"""

from django.core.management.base import BaseCommand, CommandError

from sessions_app.models import ApiKey


class Command(BaseCommand):
    help = "Create a REST API key and print it once."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="Who or what uses the key, e.g. 'CRM sync'.")
        parser.add_argument(
            "--scopes",
            default="sessions:read",
            help=f"Comma-separated, from: {', '.join(ApiKey.SCOPES)} (default sessions:read).",
        )

    def handle(self, *args, name, scopes, **options):
        wanted = [scope.strip() for scope in scopes.split(",") if scope.strip()]
        unknown = sorted(set(wanted) - set(ApiKey.SCOPES))
        if unknown or not wanted:
            raise CommandError(f"Unknown or no scopes {unknown}: choose from {', '.join(ApiKey.SCOPES)}.")
        if not name.strip() or len(name) > 100:
            raise CommandError("--name must be 1 to 100 characters.")
        key, raw = ApiKey.create(name.strip(), wanted)
        self.stdout.write(raw)
        self.stderr.write(
            f"Created API key {key} with scopes {', '.join(key.scopes)}. Store it now: it cannot be shown again."
        )
