"""Faults injected at the database itself, so the code under test meets them as it would in production."""

import contextlib

from channels.db import database_sync_to_async
from django.db import connection

from sessions_app.models import SessionEvent

TABLE = SessionEvent._meta.db_table


@contextlib.asynccontextmanager
async def database_refuses_events(message: str = "database is down"):
    """Every INSERT into the events table fails, on every connection, until the block ends: a trigger
    raises inside the statement, so the writer's transaction is rolled back as on a real outage."""
    await database_sync_to_async(_add_trigger)(message)
    try:
        yield
    finally:
        await database_sync_to_async(_drop_trigger)()


def _add_trigger(message: str) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TRIGGER refuse_events BEFORE INSERT ON {TABLE} BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$"
            )
            cursor.execute(
                f"CREATE TRIGGER refuse_events BEFORE INSERT ON {TABLE} FOR EACH ROW EXECUTE FUNCTION refuse_events()"
            )


def _drop_trigger() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("DROP TRIGGER refuse_events")
        else:
            cursor.execute(f"DROP TRIGGER refuse_events ON {TABLE}")
            cursor.execute("DROP FUNCTION refuse_events()")
