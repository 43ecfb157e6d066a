"""Page visits on PostgreSQL borrow pooled connections: a Daphne process holds a few database
sessions however many visitors come, instead of opening one per visit."""

import httpx
import psycopg
from django.db import connection

VISITS, POOL_SIZE = 20, 3


def sessions_opened(dbname: str) -> int:
    """Database sessions ever established on `dbname` (PostgreSQL's own count)."""
    db = connection.settings_dict
    with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=dbname, autocommit=True) as admin:
        admin.execute("SELECT pg_stat_clear_snapshot()")
        return admin.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", [dbname]).fetchone()[0]


def test_page_visits_share_a_few_database_sessions(make_daphne_server):
    server = make_daphne_server(env={"DATABASE_POOL_SIZE": str(POOL_SIZE)})
    httpx.get(f"{server.url}/", timeout=10).raise_for_status()  # the pool is open
    dbname = connection.settings_dict["NAME"]
    before = sessions_opened(dbname)
    for _ in range(VISITS):
        page = httpx.get(f"{server.url}/", timeout=10)
        assert page.status_code == 200 and "session_token" in page.text
    opened = sessions_opened(dbname) - before - 1  # less the session of the first count itself
    assert opened <= POOL_SIZE, f"{VISITS} page visits opened {opened} database sessions"
