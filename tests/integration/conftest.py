"""Integration tests run on PostgreSQL and the Redis channel layer (scripts/test.sh's second pass).

Every test under this folder is marked `integration` and skipped, with the reason, when the run is
not configured for those services.
"""

import os

import pytest
from django.conf import settings

HERE = os.path.dirname(__file__)


def missing_services() -> str | None:
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return "needs DATABASE_URL=postgres://... (scripts/test.sh sets it)"
    if not settings.REDIS_URL:
        return "needs REDIS_URL=redis://... (scripts/test.sh sets it)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = missing_services()
    for item in items:
        if str(item.fspath).startswith(HERE):
            item.add_marker(pytest.mark.integration)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
